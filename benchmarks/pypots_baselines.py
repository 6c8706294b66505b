"""PyPOTS' SAITS and BRITS as baselines on the BasicMotions tasks of ``benchmarks/sequences.py``.

The same data, the same corrupted test inputs, the same scored entries and the same ``mse``
as ``sequences.py`` (imported from it). Accelerometer and gyroscope are concatenated into 6
features over the 100 steps, NaN where unobserved. Each model trains on the 32 training
sequences (complete; PyPOTS masks its own training inputs: SAITS' masked imputation task,
BRITS' reconstruction of the observed entries); its validation set is the 8 held-out training
sequences with 50% of their entries removed completely at random (``pygrinder.mcar``, seed 0)
and the originals as ``X_ori``; PyPOTS keeps the weights of the epoch with the best
validation MSE. It then imputes each task's corrupted test inputs (observed entries kept).
Hyperparameters are those of PyPOTS' README and tutorials (SAITS: 2 layers, d_model 256, 4
heads, d_k = d_v = 64, d_ffn 128, dropout 0.1; BRITS: RNN hidden 128), batch 32, Adam
lr 1e-3 (PyPOTS' default), one seed.

PyPOTS pins neither torch's CPU build nor polymodal's dependencies, so it runs in its own
benchmark-only virtual environment, never the project's ``.venv``:

    python3.11 -m venv /work/venv-pypots
    /work/venv-pypots/bin/pip install torch==2.13.0   # first: the CPU build
    /work/venv-pypots/bin/pip install pypots aeon
    /work/venv-pypots/bin/pip install --no-deps -e .  # polymodal itself (or PYTHONPATH=src)

    nice /work/venv-pypots/bin/python benchmarks/pypots_baselines.py [--epochs 100] [--threads 1]

100 epochs (PyPOTS' default) take about a minute on one core, 500 about five. Keep one torch
thread on a shared machine: with two, BRITS' step-by-step RNN ran more than 25 times slower
while another job held the other core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sequences  # noqa: E402  (the benchmark's own data, tasks and score)

import polymodal as pm  # noqa: E402

SENSORS = sequences.SENSORS


def to_array(batch: pm.Batch) -> np.ndarray:
    """``[B, T, 6]`` float32: accel then gyro, NaN where unobserved."""
    arrays = batch.numpy(nan=True)
    return np.concatenate([arrays[n] for n in SENSORS], -1).astype(np.float32)


def from_array(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"accel": x[..., :3], "gyro": x[..., 3:]}


def build(name: str, epochs: int):
    from pypots.imputation import BRITS, SAITS

    common = {"n_steps": 100, "n_features": 6, "batch_size": 32, "epochs": epochs, "patience": None,
              "device": "cpu", "saving_path": None, "verbose": False}
    if name == "SAITS":
        return SAITS(n_layers=2, d_model=256, n_heads=4, d_k=64, d_v=64, d_ffn=128, dropout=0.1, **common)
    return BRITS(rnn_hidden_size=128, **common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="*", default=["SAITS", "BRITS"], choices=["SAITS", "BRITS"])
    parser.add_argument("--figures", default="benchmarks/figures", help="one figure per task: pypots_<task>.png")
    args = parser.parse_args()

    import pypots
    from pygrinder import mcar
    from pypots.utils.random import set_random_seed

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train, valid, test = sequences.data()
    x_train = to_array(train)
    x_valid = to_array(valid)
    np.random.seed(0)
    torch.manual_seed(0)
    val_set = {"X": np.asarray(mcar(x_valid, p=0.5), dtype=np.float32), "X_ori": x_valid}
    corrupted = sequences.tasks(test)

    results: dict[str, dict[str, float]] = {}
    fills: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for name in args.models:
        set_random_seed(args.seed)
        model = build(name, args.epochs)
        begin = time.perf_counter()
        model.fit({"X": x_train}, val_set)
        seconds[name] = time.perf_counter() - begin
        results[name], fills[name] = {}, {"fills": {}}
        for task, (inputs, scored) in corrupted.items():
            imputed = from_array(np.asarray(model.predict({"X": to_array(inputs)})["imputation"]))
            results[name][task] = sequences.mse(imputed, test, scored)
            fills[name]["fills"][task] = {sensor: x[sequences.SHOWN : sequences.SHOWN + 1] for sensor, x in imputed.items()}
        print(f"{name}: trained in {seconds[name]:.0f} s ({args.epochs} epochs), best validation MSE at epoch "
              f"{getattr(model, 'best_epoch', '?')}", flush=True)
    wall = time.perf_counter() - start
    for path in sequences.figures(fills, test, Path(args.figures), prefix="pypots"):
        print(f"figure: {path}")

    print()
    print("| method | " + " | ".join(f"{t} (MSE)" for t in sequences.TASKS) + " |")
    print("|---|" + "---|" * len(sequences.TASKS))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[t]:.3f}" for t in sequences.TASKS) + " |")
    print()
    print(f"pypots {pypots.__version__}, torch {torch.__version__}, {args.epochs} epochs, seed {args.seed}, "
          f"torch threads {args.threads}; wall time {wall:.0f} s")


if __name__ == "__main__":
    main()
