"""polymodal's MVAE against MultiVae's, on the same work, in one process.

The P1 case of ``benchmarks/speed.py`` (three Gaussian modalities of 5, 10 and 20 features,
N = 4096, batch 128, latent 8, 30% of b and c missing per sample), with the **same networks**
on both sides (MultiVae's defaults for these inputs: encoders in -> 512 -> 512 -> (8, 8),
decoders 8 -> 512 -> out) and the **same subsets** (the joint and the three singles), trained
with Adam in the same hand-written loop, one thread, epochs interleaved. Reports the median
samples/s of each side, the parameter counts, and the FLOPs of one training step counted from
the shapes every linear layer saw (forward 2 * rows * in * out, backward twice that).

It also times the step's matrix products alone: the same GEMM shapes, forward and backward, in
a tight loop (the floor a step could reach if everything but the products were free), the same
products at batch 4096 and 16384 (their rate as a fraction of peak), and a 2048 x 2048 fp32
product for this core's peak.

Needs MultiVae, installed only in the benchmark's own environment (``make bench-env``; its
import of torchvision is served by the stand-in in ``benchmarks/stubs``, since no CPU
torchvision installs here):

    .venv-bench/bin/python benchmarks/against_multivae.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent / "stubs"))
sys.path.insert(0, str(Path(__file__).parent))

from speed import case  # noqa: E402

import polymodal as pm  # noqa: E402

LATENT, BATCH = 8, 128


def polymodal_mvae(schema: pm.Schema) -> pm.MVAE:
    """MVAE with MultiVae's default networks for these inputs, and no random subsets."""
    model = pm.MVAE(schema, latent_dim=LATENT, subsets=0)
    for mod in schema:
        model.encoders[mod.name] = pm.nets.Encoder(mod, LATENT, hidden=(512, 512))
        model.decoders[mod.name] = pm.nets.Decoder(mod, LATENT, hidden=(512,))
    return model


def multivae_mvae(schema: pm.Schema):
    from multivae.models import MVAE, MVAEConfig

    config = MVAEConfig(n_modalities=len(schema), latent_dim=LATENT, input_dims={m.name: m.shape for m in schema},
                        decoders_dist={m.name: "normal" for m in schema}, k=0, warmup=0)
    return MVAE(config)


def multivae_batches(batch: pm.Batch, order: torch.Tensor):
    from multivae.data.datasets import IncompleteDataset

    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        yield IncompleteDataset(data={n: batch.values[n][rows] for n in batch.schema.names},
                                masks={n: batch.present(n)[rows] for n in batch.schema.names})


def polymodal_batches(batch: pm.Batch, order: torch.Tensor):
    for start in range(0, len(order), BATCH):
        yield batch.select(order[start : start + BATCH])


def epoch(model, optimizer, batches, loss) -> float:
    start = time.perf_counter()
    for b in batches:
        optimizer.zero_grad()
        loss(model, b).backward()
        optimizer.step()
    return time.perf_counter() - start


def linear_shapes(step) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every linear layer that one call of ``step`` runs."""
    shapes = []

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            shapes.append((inputs[0].reshape(-1, module.in_features).shape[0], module.in_features, module.out_features))

    hook = nn.modules.module.register_module_forward_hook(record)
    try:
        step()
    finally:
        hook.remove()
    return shapes


def step_flops(shapes: list[tuple[int, int, int]]) -> float:
    """Forward 2 r i o per layer, backward (input and weight gradients) twice that."""
    return sum(6.0 * r * i * o for r, i, o in shapes)


def gemm_floor(shapes: list[tuple[int, int, int]], repeats: int = 50) -> float:
    """Median seconds of the step's products alone: y = x W^T + b, dx = dy W, dW = dy^T x."""
    operands = [(torch.randn(r, i), torch.randn(o, i), torch.randn(o), torch.randn(r, o)) for r, i, o in shapes]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x, w, b, dy in operands:
            torch.addmm(b, x, w.t())
            dy.mm(w)
            dy.t().mm(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a.mm(b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a.mm(b)
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--large", type=int, nargs="*", default=[4096, 16384], help="batch sizes for the products' rate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = case()
    sides = {}
    for name, build, batches, loss in [
        ("polymodal", polymodal_mvae, polymodal_batches, lambda m, b: m.loss(b).loss),
        ("multivae", multivae_mvae, multivae_batches, lambda m, b: m(b).loss),
    ]:
        model = build(batch.schema)
        sides[name] = dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), batches=batches, loss=loss,
                           params=sum(p.numel() for p in model.parameters()), times=[])
    g = torch.Generator().manual_seed(0)
    for e in range(args.epochs + 1):  # the first epoch warms up
        order = torch.randperm(len(batch), generator=g)
        for side in sides.values():
            seconds = epoch(side["model"], side["optimizer"], side["batches"](batch, order), side["loss"])
            if e:
                side["times"].append(seconds)
    first = next(polymodal_batches(batch, torch.arange(BATCH)))
    multivae_first = next(multivae_batches(batch, torch.arange(BATCH)))
    shapes = {"polymodal": linear_shapes(lambda: sides["polymodal"]["model"].loss(first)),
              "multivae": linear_shapes(lambda: sides["multivae"]["model"](multivae_first))}
    floor = gemm_floor(shapes["polymodal"])
    peak = peak_flops()
    steps = -(-len(batch) // BATCH)
    report = {"case": "3 Gaussian modalities (5, 10, 20), N=4096, batch 128, latent 8, 30% of b and c missing",
              "subsets": "joint + 3 singles", "epochs": args.epochs, "peak_gflops": round(peak / 1e9, 1)}
    for name, side in sides.items():
        step = statistics.median(side["times"]) / steps
        report[name] = {"params": side["params"], "samples_per_s": round(len(batch) / statistics.median(side["times"])),
                        "range": [round(len(batch) / max(side["times"])), round(len(batch) / min(side["times"]))],
                        "step_ms": round(1e3 * step, 3), "mflops_per_step": round(step_flops(shapes[name]) / 1e6, 1)}
    report["polymodal"]["gemm_floor_ms"] = round(1e3 * floor, 3)
    report["polymodal"]["step_over_floor"] = round(report["polymodal"]["step_ms"] / (1e3 * floor), 2)
    report["polymodal_over_multivae"] = round(report["polymodal"]["samples_per_s"] / report["multivae"]["samples_per_s"], 2)
    for rows in args.large:  # the same products at a larger batch: what fraction of peak they reach
        scaled = [(r * rows // BATCH, i, o) for r, i, o in shapes["polymodal"]]
        report[f"products_at_batch_{rows}_over_peak"] = round(step_flops(scaled) / gemm_floor(scaled, 5) / peak, 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
