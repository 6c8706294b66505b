"""MFM on handwritten + printed digits with a label, and on BasicMotions (real smart-watch sensors).

Part 1 (``--part digits``): ``load_digit_styles(label=True)``; MFM and its ablations with
the same nets (shared Z_y 16, Z_a 8 per input, factors 32, one hidden layer of 256, conv
channels 32, 64), label weight 5000 (the images' Laplace costs are summed over 832 pixels;
``--weights`` sets others, e.g. ``auto``), batches of 64, ``--epochs`` epochs: label
accuracy with both inputs and with each missing at test time, read by the surrogate and by
the zero-fill baseline (the full model reading zeros for the missing input); reconstruction
MSE of the missing input from the surrogate codes; logistic regression on the pixels (both,
hand, print features) as the simple alternative. The per-pattern surrogate (the paper's)
runs beside the mask-conditioned one. A figure of conditional generations (Z_y fixed, then
each Z_a fixed) goes to ``benchmarks/figures/``.

Part 2 (``--part motions``): ``load_basic_motions(seed=seed, split=seed)``: per seed the 80
sequences split anew, 40 and 40 stratified by activity, then 8 of the 40 held out for
validation (early stopping with patience 40 on the validation loss, best weights kept), 32 to
train on; 40 test sequences. MFM with GRU encoders and decoders, activity weight 10, batches of 8: accuracy
and macro-F1 with both sensors, the accelerometer alone and the gyroscope alone (the
surrogate), MSE of the missing sensor reconstructed from the other (against the training
mean, 1 after standardisation); logistic regression and a random forest (500 trees) on
per-channel summary features (mean, SD, min, max) of the same 32 training sequences, with
both sensors and each alone. A figure of the gyroscope reconstructed from the accelerometer
alone against the truth goes to ``benchmarks/figures/``.

    python -m benchmarks.mfm --part digits [--seeds 0 1 2] [--epochs 30] [--weights auto]    # record digits
    python -m benchmarks.mfm --part motions [--seeds 0 1 2 3 4] [--epochs 300]               # record motions

``--variants`` runs only the rows named (e.g. ``--variants MFM "MFM, no modality dropout"``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import polymodal as pm
from benchmarks.results import Run, record_options, weights_option
from polymodal import metrics
from polymodal.datasets import print_features
from polymodal.report import plot_factor_generations, plot_traces

ACCURACY, F1, MSE, FIT = "accuracy", "macro-F1", "reconstruction MSE", "training"
DIGIT_NETS = {"shared_dim": 16, "modality_dim": 8, "factor_dim": 32, "hidden": (256,), "channels": (32, 64)}
DIGIT_VARIANTS = {
    "MFM": {},
    "MFM, no modality dropout": {"modality_dropout": 0.0},
    "MFM, per-pattern surrogate": {"surrogate": "pattern"},
    "purely discriminative": {"objective": "discriminative"},
    "purely generative + probe": {"objective": "generative"},
    "no factorisation": {"factorised": False},
}
MOTION_VARIANTS = {
    "MFM": {},
    "MFM, no modality dropout": {"modality_dropout": 0.0},
    "purely discriminative": {"objective": "discriminative"},
    "no factorisation": {"factorised": False},
}


def chosen(variants: dict[str, dict], args: argparse.Namespace) -> list[tuple[str, dict]]:
    """The variants named by ``--variants`` (all by default)."""
    unknown = sorted(set(args.variants or []) - set(variants))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(variants)}")
    return [(name, options) for name, options in variants.items() if not args.variants or name in args.variants]


def run_digits(args: argparse.Namespace, run: Run) -> None:
    run.table(ACCURACY, "label accuracy on the test digits with both inputs and with one missing (surrogate, or the "
                        "missing input zero-filled); higher is better")
    run.table(MSE, "the missing input reconstructed from the surrogate codes; lower is better")
    run.table(FIT, "wall time of the training")
    for seed in args.seeds:
        train, test, y_train, y_test = pm.load_digit_styles(seed=seed, label=True)
        for name, options in chosen(DIGIT_VARIANTS, args):
            torch.manual_seed(seed)
            model = pm.MFM(train.schema, weights=args.weights, **DIGIT_NETS, **options)
            start = time.perf_counter()
            pm.Trainer(model, epochs=args.epochs, batch_size=64, seed=seed, progress=False).fit(train)
            run.add(FIT, row=name, column="fit (s)", value=time.perf_counter() - start, seed=seed)
            run.add(ACCURACY, row=name, column="both", value=metrics.accuracy(model.predict(test, "label").cpu(), y_test),
                    seed=seed)
            for missing, kept in (("print", "hand"), ("hand", "print")):
                partial = test.without(missing)
                run.add(ACCURACY, row=name, column=f"{kept} only",
                        value=metrics.accuracy(model.predict(partial, "label").cpu(), y_test), seed=seed)
                run.add(ACCURACY, row=name, column=f"{kept} only, zero-filled",
                        value=metrics.accuracy(model.predict(partial, "label", surrogate=False).cpu(), y_test), seed=seed)
                if model.generative:
                    rebuilt = model.predict(partial, missing, inputs=[kept]).cpu()
                    run.add(MSE, row=name, column=f"{missing} from {kept}", value=metrics.mse(rebuilt, test.values[missing]),
                            seed=seed)
            if name == "MFM" and seed == args.seeds[0]:
                firsts = torch.stack([(y_test == c).nonzero()[0, 0] for c in range(0, 10, 2)])
                path = plot_factor_generations(model, test.select(firsts), run.figure_path("mfm_generations"))
                run.figure(path, "conditional generations: Z_y fixed, then each Z_a fixed (digits 0, 2, 4, 6, 8)")
            print(f"{name}, seed {seed} done", flush=True)
        features = {
            "hand": lambda b: b.values["hand"].flatten(1).numpy(),
            "print": lambda b: print_features(b.values["print"]).numpy(),
        }
        for kept, columns in (("both", ["hand", "print"]), ("hand only", ["hand"]), ("print only", ["print"])):
            x_train = np.concatenate([features[c](train) for c in columns], 1)
            x_test = np.concatenate([features[c](test) for c in columns], 1)
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1)).fit(x_train, y_train.numpy())
            run.add(ACCURACY, row="logistic regression (pixels; print features)", column=kept,
                    value=clf.score(x_test, y_test.numpy()), seed=seed)


def summary_features(batch, sensors) -> np.ndarray:
    """Per-channel mean, SD, min and max of each sensor's sequence: ``[B, 12 per sensor]``."""
    parts = []
    for sensor in sensors:
        x = batch.values[sensor]
        parts += [x.mean(1), x.std(1), x.amin(1), x.amax(1)]
    return torch.cat(parts, 1).numpy()


def run_motions(args: argparse.Namespace, run: Run) -> None:
    run.table(ACCURACY, "activity accuracy on the 40 test sequences with both sensors and with one alone; higher is better")
    run.table(F1, "macro-F1 over the 4 activities; higher is better")
    run.table(MSE, "the missing sensor from the other (standardised: the training mean scores about 1); lower is better")
    run.table(FIT, "wall time of the training and the epochs run (early stopping, patience 40)")
    for seed in args.seeds:
        train, valid, test = pm.load_basic_motions(seed=seed, split=seed)
        y_train, y_test = train.values["activity"].long(), test.values["activity"].long()
        for name, options in chosen(MOTION_VARIANTS, args):
            torch.manual_seed(seed)
            model = pm.MFM(train.schema, weights={"activity": 10.0}, hidden=(64,), rnn_hidden=64, **options)
            start = time.perf_counter()
            history = pm.Trainer(model, epochs=args.epochs, batch_size=8, patience=40, seed=seed,
                                 progress=False).fit(train, valid)
            run.add(FIT, row=name, column="fit (s)", value=time.perf_counter() - start, seed=seed)
            run.add(FIT, row=name, column="epochs", value=len(history), seed=seed)
            for column, batch in (("both", test), ("accel only", test.without("gyro")), ("gyro only", test.without("accel"))):
                predicted = model.predict(batch, "activity").cpu()
                run.add(ACCURACY, row=name, column=column, value=metrics.accuracy(predicted, y_test), seed=seed)
                run.add(F1, row=name, column=column, value=metrics.macro_f1(predicted, y_test, classes=4), seed=seed)
            if model.generative:
                for missing, kept in (("gyro", "accel"), ("accel", "gyro")):
                    rebuilt = model.predict(test.without(missing), missing, inputs=[kept]).cpu()
                    run.add(MSE, row=name, column=f"{missing} from {kept}", value=metrics.mse(rebuilt, test.values[missing]),
                            seed=seed)
                    if name == "MFM" and missing == "gyro" and seed == args.seeds[0]:
                        firsts = torch.stack([(y_test == c).nonzero()[0, 0] for c in range(4)])  # one per activity
                        title = ("BasicMotions test: gyroscope reconstructed from the accelerometer alone "
                                 "(standing, walking, running, badminton)")
                        path = plot_traces(test.values["gyro"][firsts], {"MFM from accel": rebuilt[firsts]},
                                           run.figure_path("mfm_gyro_from_accel"), n=4, title=title)
                        run.figure(path, title)
            print(f"{name}, seed {seed} done", flush=True)
        for column, sensors in (("both", ["accel", "gyro"]), ("accel only", ["accel"]), ("gyro only", ["gyro"])):
            x_train, x_test = summary_features(train, sensors), summary_features(test, sensors)
            baselines = {
                "logistic regression (summary features)": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                "random forest (summary features)": RandomForestClassifier(500, random_state=seed),
            }
            for name, clf in baselines.items():
                predicted = clf.fit(x_train, y_train.numpy()).predict(x_test)
                run.add(ACCURACY, row=name, column=column, value=metrics.accuracy(torch.as_tensor(predicted), y_test),
                        seed=seed)
                run.add(F1, row=name, column=column, value=metrics.macro_f1(predicted, y_test.numpy(), classes=4), seed=seed)
        for missing in ("gyro", "accel"):
            run.add(MSE, row="training mean", column=f"{missing} from {'accel' if missing == 'gyro' else 'gyro'}",
                    value=metrics.mse(torch.zeros_like(test.values[missing]), test.values[missing]), seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["digits", "motions"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (digits), 0 1 2 3 4 (motions)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 30 (digits), 300 (motions)")
    parser.add_argument("--weights", type=weights_option, default={"label": 5000.0}, help="digits: auto or name=value pairs")
    parser.add_argument("--variants", nargs="+", default=None, help="the MFM rows to run (default: all)")
    args = record_options(parser).parse_args()
    args.seeds = args.seeds or {"digits": [0, 1, 2], "motions": [0, 1, 2, 3, 4]}[args.part]
    args.epochs = args.epochs or {"digits": 30, "motions": 300}[args.part]
    titles = {"digits": "MFM on handwritten and printed digits with a label",
              "motions": "MFM on BasicMotions (accelerometer and gyroscope, 4 activities)"}
    run = Run("mfm", args, title=titles[args.part], name=args.record or args.part,
              description=f"MFM and its ablations against simple classifiers, {args.epochs} epochs.")
    {"digits": run_digits, "motions": run_motions}[args.part](args, run)
    run.save()


if __name__ == "__main__":
    main()
