"""Sequence models on real sensor data: BasicMotions (a smart watch's accelerometer and
gyroscope, 3 axes each, 100 steps; 4 activities), BFVI and the four RNN-inference (DKS)
variants against the baselines a user would try first.

``BFVI-cross`` is MDMM with ``cross=True``: each input subset's terms (accel alone, gyro
alone) also score the other sensor, which trains the cross-modal tasks. Every model trains
on the 32 training sequences of ``load_basic_motions(label="step")``
(complete; the models' own burst deletion of inputs during training), with the 8 held-out
training sequences as validation: the weights of the epoch with the best validation loss
(the training objective) are kept. ``activity`` (per step) is a target only, never an input.
The 40 test sequences (standardised with the training statistics) are corrupted per task,
the same masks for every method:

- ``50% deleted``: 50 random steps deleted per modality and sequence, independently; scored
  on the deleted steps only;
- ``burst 20``: 20 consecutive steps deleted in both modalities (one random start per
  sequence); scored on the burst;
- ``gyro from accel`` / ``accel from gyro``: one modality deleted entirely; scored on it;
- ``fwd extra 25%``: the last 25 steps of both deleted; scored on them.

Scores are the mean squared error over the scored entries (standardised units). The models
fill with ``impute`` (decoded from the smoothing / inference network's mean path, observed
entries kept). Baselines, per channel and sequence: linear interpolation (``np.interp``:
held constant beyond the observed span), last observation carried forward (the first
observation carried backward before it), the sequence's observed mean; each falls back on
the training mean (0) where a channel has nothing observed. For the cross-modal tasks, ridge
regression from one sensor to the other over a window of +-``WINDOW`` neighbouring steps
(``RidgeCV`` fitted on the training sequences).

Activity (one per sequence) from the accelerometer alone and from both: the models'
``predict`` (per-step class probabilities averaged over the steps, then argmax); the
baseline is a logistic regression on each channel's mean and SD over the sequence.

    python -m benchmarks.sequences [--epochs 300] [--workers 2] [--out runs/sequences]
    python -m benchmarks.sequences --profile    # where a BFVI training step spends its time (printed, no record)

The ``training step`` table times one training step (loss, gradient, Adam; a batch of 16) of
every model in this one process, the models taking turns, in CPU time (``--speed-steps`` each,
median): its ratio to F-Mask does not depend on what else runs on the machine.

Checkpoints go to ``--out``; the figures (one per task) to ``benchmarks/figures/sequences_<task>.png``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import pstats
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV

import polymodal as pm
from benchmarks.results import Run, record_options
from polymodal import missing

SENSORS = ("accel", "gyro")
WINDOW = 5
SHARED = {"latent_dim": 8, "hidden": (64,), "transition_hidden": 32, "inputs": list(SENSORS)}
MODELS = {
    "BFVI": ("MDMM", {}),
    "BFVI-cross": ("MDMM", {"cross": True}),  # every subset's terms score every modality: accel's posterior learns gyro
    "F-Mask": ("DKS", {"direction": "forward", "rnn_hidden": 32}),
    "F-Skip": ("DKS", {"direction": "forward", "skip": True, "rnn_hidden": 32}),
    "B-Mask": ("DKS", {"direction": "backward", "rnn_hidden": 32}),
    "B-Skip": ("DKS", {"direction": "backward", "skip": True, "rnn_hidden": 32}),
}
SHOWN = 20  # the test sequence of the figures, the first of the walking ones
TASKS = ("50% deleted", "burst 20", "gyro from accel", "accel from gyro", "fwd extra 25%")
MSE, ACCURACY = "MSE on the scored entries", "activity accuracy"


def data() -> tuple[pm.Batch, pm.Batch, pm.Batch]:
    train, valid, test = pm.load_basic_motions(label="step")
    return train, valid, test


def tasks(test: pm.Batch) -> dict[str, tuple[pm.Batch, dict[str, np.ndarray]]]:
    """Per task: the corrupted inputs (activity withheld) and, per sensor, the ``[B, T]`` steps
    scored."""
    inputs = test.without("activity")
    b, t = inputs.observed["accel"].shape[:2]
    g = torch.Generator().manual_seed(0)
    half = missing.drop_steps(inputs, 0.5, list(SENSORS), g)
    start = torch.randint(0, t - 20 + 1, (b, 1), generator=g)
    steps = torch.arange(t)
    burst = (steps >= start) & (steps < start + 20)
    corrupted = {
        "50% deleted": half,
        "burst 20": inputs.with_observed({n: inputs.observed[n] & ~burst[..., None] for n in SENSORS}),
        "gyro from accel": inputs.without("gyro"),
        "accel from gyro": inputs.without("accel"),
        "fwd extra 25%": missing.keep_segment(inputs, 0.0, 0.75, list(SENSORS)),
    }
    return {task: (batch, {n: (~batch.present(n)).numpy() for n in SENSORS if (~batch.present(n)).any()})
            for task, batch in corrupted.items()}


def mse(filled: dict[str, np.ndarray], truth: pm.Batch, scored: dict[str, np.ndarray]) -> float:
    """Mean squared error over the scored steps' entries of every scored sensor."""
    errors = [((filled[n] - truth.values[n].numpy()) ** 2)[scored[n]].ravel() for n in scored]
    return float(np.concatenate(errors).mean())


def per_channel(batch: pm.Batch, fill) -> dict[str, np.ndarray]:
    """Apply ``fill(values [T], observed [T]) -> [T]`` to every channel of every sequence;
    observed entries stay, a channel with nothing observed gets the training mean, 0."""
    out = {}
    for name in SENSORS:
        values, observed = batch.values[name].numpy(), batch.observed[name].numpy()
        filled = np.zeros_like(values)
        for i in range(values.shape[0]):
            for c in range(values.shape[2]):
                if observed[i, :, c].any():
                    filled[i, :, c] = np.where(observed[i, :, c], values[i, :, c], fill(values[i, :, c], observed[i, :, c]))
        out[name] = filled
    return out


def interpolate(v: np.ndarray, o: np.ndarray) -> np.ndarray:
    steps = np.arange(len(v))
    return np.interp(steps, steps[o], v[o])


def locf(v: np.ndarray, o: np.ndarray) -> np.ndarray:
    index = np.where(o, np.arange(len(v)), -1)
    index = np.maximum.accumulate(index)
    index[index < 0] = np.flatnonzero(o)[0]
    return v[index]


def sequence_mean(v: np.ndarray, o: np.ndarray) -> np.ndarray:
    return np.full_like(v, v[o].mean())


BASELINES = {"linear interpolation": interpolate, "LOCF": locf, "per-channel mean": sequence_mean}


def windows(x: np.ndarray) -> np.ndarray:
    """``[B, T, C]`` -> ``[B * T, (2 WINDOW + 1) C]``: each step with its neighbours (edges repeated)."""
    padded = np.pad(x, ((0, 0), (WINDOW, WINDOW), (0, 0)), mode="edge")
    t = x.shape[1]
    return np.concatenate([padded[:, k : k + t] for k in range(2 * WINDOW + 1)], -1).reshape(-1, (2 * WINDOW + 1) * x.shape[2])


def ridge(train: pm.Batch, test: pm.Batch, source: str, target: str) -> np.ndarray:
    """``target`` from ``source`` by ridge regression over a window of steps: ``[B, T, 3]``."""
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(windows(train.values[source].numpy()),
                                                        train.values[target].numpy().reshape(-1, 3))
    return model.predict(windows(test.values[source].numpy())).reshape(test.values[target].shape)


def summary_features(batch: pm.Batch, names: list[str]) -> np.ndarray:
    return np.concatenate([np.concatenate([batch.values[n].numpy().mean(1), batch.values[n].numpy().std(1)], -1)
                           for n in names], -1)


def sequence_labels(batch: pm.Batch) -> np.ndarray:
    return batch.values["activity"][:, 0].numpy()


def build(name: str, schema: pm.Schema, seed: int) -> pm.models.base.Model:
    kind, options = MODELS[name]
    torch.manual_seed(seed)
    return pm.MODELS[kind.lower()](schema, **SHARED, **options)


def trainer(model, epochs: int, seed: int, out: Path | None = None) -> pm.Trainer:
    return pm.Trainer(model, epochs=epochs, batch_size=16, lr=3e-3, weight_decay=1e-4, kl_warmup=epochs / 5, clip_grad=50.0,
                      patience=epochs, seed=seed, out=out, checkpoint_every=25, progress=False)


def evaluate(name: str, epochs: int, out: str, seed: int = 0) -> dict:
    """Train one model (resuming its checkpoint) and score it on every task."""
    torch.set_num_threads(1)
    train, valid, test = data()
    model = build(name, train.schema, seed)
    start = time.perf_counter()
    history = trainer(model, epochs, seed, Path(out) / name).fit(train, valid, resume=True)
    result = {"train_s": time.perf_counter() - start, "epoch_s": float(np.median([h["seconds"] for h in history])),
              "best_epoch": int(np.argmin([h["valid_loss"] for h in history])) + 1, "tasks": {}, "fills": {}}
    for task, (inputs, scored) in tasks(test).items():
        torch.manual_seed(0)
        filled = model.impute(inputs).numpy(nan=False)
        result["tasks"][task] = mse(filled, test, scored)
        result["fills"][task] = {n: filled[n][SHOWN : SHOWN + 1].tolist() for n in SENSORS}
    truth = sequence_labels(test)
    for label, hidden in (("activity from accel", ["gyro"]), ("activity from both", [])):
        torch.manual_seed(0)
        proba = model.predict(test.without("activity", *hidden), "activity", list(SENSORS), proba=True)
        result["tasks"][label] = float((proba.mean(1).argmax(-1).numpy() == truth).mean())
    return result


def baselines(train: pm.Batch, test: pm.Batch) -> dict[str, dict]:
    rows = {name: {"tasks": {}, "fills": {}} for name in (*BASELINES, "ridge (window ±5)")}
    for task, (inputs, scored) in tasks(test).items():
        for name, fill in BASELINES.items():
            filled = per_channel(inputs, fill)
            rows[name]["tasks"][task] = mse(filled, test, scored)
            rows[name]["fills"][task] = {n: filled[n][SHOWN : SHOWN + 1].tolist() for n in SENSORS}
    for task, (source, target) in (("gyro from accel", ("accel", "gyro")), ("accel from gyro", ("gyro", "accel"))):
        inputs, scored = tasks(test)[task]
        filled = {target: ridge(train, test, source, target), source: test.values[source].numpy()}
        rows["ridge (window ±5)"]["tasks"][task] = mse(filled, test, scored)
        rows["ridge (window ±5)"]["fills"][task] = {n: filled[n][SHOWN : SHOWN + 1].tolist() for n in SENSORS}
    probe = "logistic regression on mean, SD"
    rows[probe] = {"tasks": {}, "fills": {}}
    for label, names in (("activity from accel", ["accel"]), ("activity from both", list(SENSORS))):
        clf = LogisticRegression(max_iter=2000).fit(summary_features(train, names), sequence_labels(train))
        rows[probe]["tasks"][label] = float((clf.predict(summary_features(test, names)) == sequence_labels(test)).mean())
    return rows


def targets(run: Run) -> None:
    """The targets, read off the record's table, as notes."""
    scores = run.values(MSE)
    bfvi = {task: value[0] for task, value in scores["BFVI"].items()}
    base = {n: {task: value[0] for task, value in row.items()} for n, row in scores.items() if n not in MODELS}
    linear = base["linear interpolation"]["burst 20"]
    run.note(f"burst 20: BFVI {bfvi['burst 20']:.3f} against linear interpolation {linear:.3f}: "
             + ("met" if bfvi["burst 20"] < linear else "not met"))
    best = min((t["gyro from accel"], n) for n, t in base.items() if "gyro from accel" in t)
    run.note(f"gyro from accel: BFVI {bfvi['gyro from accel']:.3f} against the best baseline, {best[1]}, {best[0]:.3f}: "
             + ("met" if bfvi["gyro from accel"] < best[0] else "not met"))
    best = min((t["50% deleted"], n) for n, t in base.items() if "50% deleted" in t)
    ratio = bfvi["50% deleted"] / best[0]
    run.note(f"50% deleted: BFVI {bfvi['50% deleted']:.3f} = {ratio:.2f}x the best baseline, {best[1]}, {best[0]:.3f}: "
             + ("met" if ratio <= 1.2 else "not met") + " (target 1.2x)")


def record(run: Run, results: dict[str, dict], seed: int | None) -> None:
    """Each method's task scores into the run's tables (``results[method]["tasks"]``)."""
    captions = {MSE: "standardised units; lower is better", ACCURACY: "one activity per test sequence; higher is better"}
    for name, r in results.items():
        for task, value in r["tasks"].items():
            table = MSE if task in TASKS else ACCURACY
            run.table(table, captions[table])
            run.add(table, row=name, column=task, value=value, seed=seed)


def figures(run: Run, results: dict[str, dict], test: pm.Batch, stem: str = "sequences") -> None:
    """One figure per task, ``benchmarks/figures/{stem}_{task}.png``, into the run: test
    sequence ``SHOWN``, truth against every method's fill (``results[method]["fills"][task][sensor]``,
    ``[1, T, 3]``), each sensor's first axis; the scored steps shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task, (_, scored) in tasks(test).items():
        fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
        for ax, name in zip(axes, SENSORS):
            truth = test.values[name][SHOWN, :, 0].numpy()
            if name in scored:
                for t in np.flatnonzero(scored[name][SHOWN]):
                    ax.axvspan(t - 0.5, t + 0.5, color="0.9", lw=0)
            ax.plot(truth, color="black", lw=2, label="truth")
            for method, r in results.items():
                if task in r["fills"]:
                    ax.plot(np.array(r["fills"][task][name])[0, :, 0], lw=1, label=method)
            ax.set_ylabel(f"{name} x (standardised)")
        axes[0].set_title(f"BasicMotions, {task}: test sequence {SHOWN}, walking (shaded: scored steps)")
        axes[0].legend(ncol=5, fontsize=7, loc="upper left")
        axes[1].set_xlabel("step")
        fig.tight_layout()
        path = run.figure_path(f"{stem}_{task.replace(' ', '_').replace('%', 'pc')}")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        run.figure(path, f"{task}: test sequence {SHOWN}, the truth against each method's fill")


def speed(run: Run, names: list[str], steps: int) -> None:
    """CPU time of one training step of each model (batch 16), the models taking turns in
    this process; medians and the ratio to F-Mask into the run's ``training step`` table."""
    torch.set_num_threads(1)
    train, _, _ = data()
    batch = train.select(slice(0, 16))
    models = {name: build(name, train.schema, 0).train() for name in names}
    optimizers = {name: torch.optim.Adam(model.parameters(), 1e-3) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(steps + 1):
        for name, model in models.items():
            start = time.process_time()
            optimizers[name].zero_grad()
            model.loss(batch).loss.backward()
            optimizers[name].step()
            if turn:  # the first turn warms up
                times[name].append(time.process_time() - start)
    run.table("training step", f"CPU time of one training step (batch 16, 100 steps), median of {steps}, the models "
                               "taking turns in one process")
    median = {name: float(np.median(t)) for name, t in times.items()}
    for name in names:
        run.add("training step", row=name, column="CPU ms", value=1000 * median[name])
        if "F-Mask" in median:
            run.add("training step", row=name, column="x F-Mask", value=median[name] / median["F-Mask"])


def profile(steps: int = 20) -> None:
    """Where the time of a BFVI and an F-Mask training step goes, on BasicMotions batches of 16."""
    torch.set_num_threads(1)
    train, _, _ = data()
    batch = train.select(slice(0, 16))
    for name in ("BFVI", "F-Mask"):
        model = build(name, train.schema, 0).train()
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad()
            model.loss(batch).loss.backward()
            optimizer.step()

        step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        print(f"{name}: {(time.perf_counter() - start) / steps * 1000:.1f} ms per training step (batch 16, 100 steps)")
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            step()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(r"polymodal|backward|_VariableFunctions", 18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/sequences")
    parser.add_argument("--profile", action="store_true", help="profile training steps instead")
    parser.add_argument("--speed-steps", type=int, default=10, help="training steps timed per model (0: no timing)")
    args = record_options(parser).parse_args()
    if args.profile:
        profile()
        return
    run = Run("sequences", args, title="Sequence models on BasicMotions",
              description="BFVI and the RNN-inference variants against simple baselines on a smart watch's "
                          "accelerometer and gyroscope: 32 training sequences (8 held out for the best epoch), 40 test "
                          "sequences corrupted per task; MSE on the deleted entries, activity accuracy per sequence.")
    if args.speed_steps:
        speed(run, args.models, args.speed_steps)
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        pending = {name: pool.apply_async(evaluate, (name, args.epochs, args.out, args.seed)) for name in args.models}
        results = {name: p.get() for name, p in pending.items()}
    train, _, test = data()
    results.update(baselines(train, test))
    record(run, results, args.seed)
    if "BFVI" in results:
        targets(run)
    run.table("training", f"{args.epochs} epochs, {args.workers} workers, 2 steps of 16 per epoch")
    for name in args.models:
        cells = {"training (s)": results[name]["train_s"], "epoch (s, median)": results[name]["epoch_s"],
                 "best validation epoch": results[name]["best_epoch"]}
        for column, value in cells.items():
            run.add("training", row=name, column=column, value=value, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({k: {**v, "fills": None} for k, v in results.items()}, indent=1))
    figures(run, results, test)
    run.save()


if __name__ == "__main__":
    main()
