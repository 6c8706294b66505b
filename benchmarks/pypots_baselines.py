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

    nice /work/venv-pypots/bin/python -m benchmarks.pypots_baselines [--epochs 100] [--threads 1]

The figures go to ``benchmarks/figures/pypots_<task>.png``.

100 epochs (PyPOTS' default) take about a minute on one core, 500 about five. Keep one torch
thread on a shared machine: with two, BRITS' step-by-step RNN ran more than 25 times slower
while another job held the other core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import polymodal as pm
from benchmarks import sequences  # the benchmark's own data, tasks and score
from benchmarks.results import Run, record_options

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
    args = record_options(parser).parse_args()

    from pygrinder import mcar
    from pypots.utils.random import set_random_seed

    run = Run("pypots_baselines", args, title="PyPOTS' SAITS and BRITS on the BasicMotions tasks",
              libraries=["pypots", "pygrinder"],
              description="The tasks, masks and scores of the sequence models' benchmark on BasicMotions; each model "
                          "trains on the 32 training sequences, validated on the 8 held out with 50% of their entries "
                          "removed, and imputes the corrupted test inputs.")
    torch.set_num_threads(args.threads)
    train, valid, test = sequences.data()
    x_train = to_array(train)
    x_valid = to_array(valid)
    np.random.seed(0)
    torch.manual_seed(0)
    val_set = {"X": np.asarray(mcar(x_valid, p=0.5), dtype=np.float32), "X_ori": x_valid}
    corrupted = sequences.tasks(test)

    results: dict[str, dict] = {}
    training: dict[str, dict[str, float]] = {}
    for name in args.models:
        set_random_seed(args.seed)
        model = build(name, args.epochs)
        begin = time.perf_counter()
        model.fit({"X": x_train}, val_set)
        training[name] = {"training (s)": time.perf_counter() - begin}
        if getattr(model, "best_epoch", None) is not None:
            training[name]["best validation epoch"] = model.best_epoch
        results[name] = {"tasks": {}, "fills": {}}
        for task, (inputs, scored) in corrupted.items():
            imputed = from_array(np.asarray(model.predict({"X": to_array(inputs)})["imputation"]))
            results[name]["tasks"][task] = sequences.mse(imputed, test, scored)
            results[name]["fills"][task] = {sensor: x[sequences.SHOWN : sequences.SHOWN + 1] for sensor, x in imputed.items()}
        print(f"{name} done", flush=True)
    sequences.record(run, results, args.seed)
    run.table("training", f"{args.epochs} epochs, {args.threads} torch thread(s)")
    for name, cells in training.items():
        for column, value in cells.items():
            run.add("training", row=name, column=column, value=value, seed=args.seed)
    sequences.figures(run, results, test, stem="pypots")
    run.save()


if __name__ == "__main__":
    main()
