"""polymodal's MVAE, MoPoE and MMVAE against MultiVae's, on the same work, in one process.

The P1 case of ``benchmarks/speed.py`` (three Gaussian modalities of 5, 10 and 20 features,
N = 4096, batch 128, latent 8, 30% of b and c missing per sample), with the **same networks**
on both sides (MultiVae's defaults for these inputs: encoders in -> 512 -> 512 -> (8, 8),
decoders 8 -> 512 -> out, ReLU between layers; polymodal's default is SiLU) and the **same
work**: MVAE on the joint and the three singles; MoPoE with one component of each sample's
power set drawn per sample (MultiVae's estimator; polymodal's default stratified one, a draw
from every component, is a row of its own); MMVAE with the stratified IWAE bound, K draws
per component, Gaussian posteriors and a fixed prior (MultiVae's ``iwae_looser``). Trained
with Adam in the same hand-written loop, one thread, every side's epochs interleaved.
Reports the median samples/s of each side, the parameter counts, and the FLOPs of one
training step counted from the shapes every linear layer saw
(forward 2 * rows * in * out, backward twice that).

It also times each polymodal step's matrix products alone: the same GEMM shapes, forward and
backward, in a tight loop (the floor a step could reach if everything but the products were
free); MVAE's products at batch 4096 and 16384 (their rate as a fraction of peak); and a
2048 x 2048 fp32 product for this core's peak. ``--compile`` adds each polymodal model with
its loss through ``torch.compile`` (the first epoch, which compiles, is not timed).

Needs MultiVae, installed only in the benchmark's own environment (``make bench-env``); where
no torchvision is installed (no CPU build installs beside torch 2.13.0), its import of
torchvision is served by the stand-in in ``benchmarks/stubs``, loaded just before MultiVae:

    .venv-bench/bin/python -m benchmarks.against_multivae [--epochs 10] [--models MVAE MoPoE MMVAE] [--k 10] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from torch import nn

import polymodal as pm
from benchmarks.results import Run, record_options
from benchmarks.speed import case
from benchmarks.stubs import use_torchvision_stand_in
from polymodal.training import Adam

LATENT, BATCH = 8, 128


def matched(model: pm.Model) -> pm.Model:
    """``model`` with MultiVae's default networks for these inputs."""
    for mod in model.schema:
        model.encoders[mod.name] = pm.nets.Encoder(mod, LATENT, hidden=(512, 512), activation=nn.ReLU)
        model.decoders[mod.name] = pm.nets.Decoder(mod, LATENT, hidden=(512,), activation=nn.ReLU)
    return model


def multivae_config(kind, schema: pm.Schema, **options):
    return kind(n_modalities=len(schema), latent_dim=LATENT, input_dims={m.name: m.shape for m in schema},
                decoders_dist={m.name: "normal" for m in schema}, **options)


def polymodal_models(k: int) -> dict:
    """Each polymodal model on the same work as its MultiVae counterpart: MVAE on the joint and
    the three singles (no random subsets); MoPoE drawing one component of each sample's power
    set (the reference's estimator; the default stratified one, 7 draws per sample, is its own
    row); MMVAE's stratified IWAE bound with K draws per component."""
    return {
        "MVAE": lambda s: matched(pm.MVAE(s, latent_dim=LATENT, subsets=0)),
        "MoPoE": lambda s: matched(pm.MoPoE(s, latent_dim=LATENT, mixture="sampled")),
        "MoPoE, stratified": lambda s: matched(pm.MoPoE(s, latent_dim=LATENT)),
        "MMVAE": lambda s: matched(pm.MMVAE(s, latent_dim=LATENT, samples=k)),
    }


def multivae_models(k: int) -> dict:
    use_torchvision_stand_in()
    from multivae.models import MMVAE, MVAE, MMVAEConfig, MoPoE, MoPoEConfig, MVAEConfig

    return {
        "MVAE": lambda s: MVAE(multivae_config(MVAEConfig, s, k=0, warmup=0)),
        "MoPoE": lambda s: MoPoE(multivae_config(MoPoEConfig, s)),
        "MMVAE": lambda s: MMVAE(multivae_config(MMVAEConfig, s, K=k, loss="iwae_looser", prior_and_posterior_dist="normal",
                                                 learn_prior=False)),
    }


def multivae_batches(batch: pm.Batch, order: torch.Tensor):
    use_torchvision_stand_in()
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
    parser.add_argument("--models", nargs="+", default=["MVAE", "MoPoE", "MMVAE"], choices=["MVAE", "MoPoE", "MMVAE"])
    parser.add_argument("--k", type=int, default=10, help="MMVAE's draws per component (MultiVae's default)")
    parser.add_argument("--compile", action="store_true", help="also each polymodal model with its loss through torch.compile")
    parser.add_argument("--large", type=int, nargs="*", default=[4096, 16384], help="batch sizes for the products' rate")
    args = record_options(parser).parse_args()
    run = Run("against_multivae", args, title="polymodal against MultiVae on the same work", libraries=["multivae", "pythae"],
              description="3 Gaussian modalities (5, 10, 20 features), N = 4096, batch 128, latent 8, 30% of b and c "
                          "missing; the same networks (MultiVae's defaults) and estimators on both sides, Adam in the same "
                          "loop, one thread, every side's epochs interleaved (the first, which warms up and compiles, "
                          "not timed).")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = case()
    ours, theirs = polymodal_models(args.k), multivae_models(args.k)
    builds = {}
    for kind in args.models:
        builds.update({f"polymodal {name}": (build, polymodal_batches, lambda m, b: m.loss(b).loss)
                       for name, build in ours.items() if name.split(",")[0] == kind})
        if args.compile:
            builds[f"polymodal {kind}, compiled"] = (ours[kind], polymodal_batches, torch.compile(lambda m, b: m.loss(b).loss))
        builds[f"MultiVae {kind}"] = (theirs[kind], multivae_batches, lambda m, b: m(b).loss)
    sides = {}
    for name, (build, batches, loss) in builds.items():
        torch.manual_seed(0)
        model = build(batch.schema)
        sides[name] = dict(model=model, optimizer=Adam(model.parameters(), lr=1e-3, fused=True), batches=batches, loss=loss,
                           params=sum(p.numel() for p in model.parameters()), times=[])
    g = torch.Generator().manual_seed(0)
    for e in range(args.epochs + 1):  # the first epoch warms up (and compiles)
        order = torch.randperm(len(batch), generator=g)
        for side in sides.values():
            seconds = epoch(side["model"], side["optimizer"], side["batches"](batch, order), side["loss"])
            if e:
                side["times"].append(seconds)
    first = {polymodal_batches: next(polymodal_batches(batch, torch.arange(BATCH))),
             multivae_batches: next(multivae_batches(batch, torch.arange(BATCH)))}
    peak = peak_flops()
    steps = -(-len(batch) // BATCH)
    table = "training speed"
    run.table(table, f"{args.epochs} epochs; MMVAE with K = {args.k}; samples/s: the median epoch's (min and max: the "
                     "slowest and fastest epoch's); the GEMM floor: the step's matrix products alone")
    run.note(f"this core's peak: {peak / 1e9:.1f} GFLOP/s (a 2048 x 2048 fp32 product)")
    for name, side in sides.items():
        call = side["model"].loss if name.startswith("polymodal") else side["model"]
        shapes = linear_shapes(partial(call, first[side["batches"]]))
        step = statistics.median(side["times"]) / steps
        cells = {"params": side["params"], "samples/s": len(batch) / statistics.median(side["times"]),
                 "samples/s, min": len(batch) / max(side["times"]), "samples/s, max": len(batch) / min(side["times"]),
                 "step (ms)": 1e3 * step, "MFLOPs per step": step_flops(shapes) / 1e6}
        if name.startswith("polymodal"):
            floor = gemm_floor(shapes)
            cells.update({"GEMM floor (ms)": 1e3 * floor, "step over floor": step / floor})
        for column, value in cells.items():
            run.add(table, row=name, column=column, value=value)
        if name == "polymodal MVAE":
            for rows in args.large:  # the same products at a larger batch: what fraction of peak they reach
                scaled = [(r * rows // BATCH, i, o) for r, i, o in shapes]
                run.add("MVAE's products over peak", row=f"batch {rows}", column="fraction of peak",
                        value=step_flops(scaled) / gemm_floor(scaled, 5) / peak)
    speeds = run.values(table)
    for name in sides:
        if name.startswith("polymodal"):
            kind = name.split()[1].rstrip(",")
            run.add("polymodal over MultiVae", row=name, column="samples/s ratio",
                    value=speeds[name]["samples/s"][0] / speeds[f"MultiVae {kind}"]["samples/s"][0])
    run.save()


if __name__ == "__main__":
    main()
