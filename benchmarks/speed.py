"""MVAE training speed on the MultiVae comparison case.

Three Gaussian modalities of 5, 10 and 20 standard-normal features, N = 4096, batch 128,
latent 8, one hidden layer of 512 units in every encoder and decoder, 30% of modalities b
and c missing per sample. Reports the median training throughput (samples/s) over epochs
for each intra-op thread setting, measured in the same run.

    python -m benchmarks.speed [--epochs 5] [--threads 1 2]            # record default
    python -m benchmarks.speed --busy                                  # record busy
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics

import torch

import polymodal as pm
from benchmarks.results import Run, record_options


def case(n: int = 4096, seed: int = 0) -> pm.Batch:
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("a", (5,)), pm.Modality("b", (10,)), pm.Modality("c", (20,))])
    data = {name: torch.randn(n, d, generator=g) for name, d in [("a", 5), ("b", 10), ("c", 20)]}
    for name in ("b", "c"):
        data[name][torch.rand(n, generator=g) < 0.3] = float("nan")
    return pm.Batch.from_data(schema, data)


def throughput(batch: pm.Batch, threads: int, epochs: int, subsets: int) -> float:
    model = pm.MVAE(batch.schema, latent_dim=8, hidden=(512,), subsets=subsets)
    trainer = pm.Trainer(model, epochs=epochs + 1, batch_size=128, threads=threads, progress=False)
    history = trainer.fit(batch)
    return statistics.median(len(batch) / h["seconds"] for h in history[1:])  # first epoch warms up


def spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--subsets", type=int, default=1, help="k random subsets per step")
    parser.add_argument("--busy", action="store_true", help="keep another core busy while measuring")
    args = record_options(parser).parse_args()
    run = Run("speed", args, title="MVAE training speed" + (", another core busy" if args.busy else ""),
              description="3 Gaussian modalities (5, 10, 20 features), N = 4096, batch 128, latent 8, hidden 512, "
                          f"30% of b and c missing; {args.subsets} random subset(s) per step.",
              name=args.record or ("busy" if args.busy else None))
    run.table("throughput", "median samples/s over the epochs after the first; higher is better")
    batch = case()
    burner = multiprocessing.Process(target=spin, daemon=True) if args.busy else None
    if burner:
        burner.start()
    try:
        for t in args.threads:
            run.add("throughput", row="MVAE", column=f"threads={t}", value=throughput(batch, t, args.epochs, args.subsets))
    finally:
        if burner:
            burner.terminate()
    run.save()


if __name__ == "__main__":
    main()
