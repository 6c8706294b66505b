"""The Imputer against scikit-learn's imputers, as a new user would compare them (issue #21).

Protocol (as ``benchmarks/tabular.py``): min-max scaling of numeric tables, 80/20 split,
missingness drawn on both the training and the test rows, every imputer fit on the
incomplete training rows only and asked to fill the test rows; NRMSE (numeric) or PFC
(biopsy, categorical) over the removed test cells; mean and SD over seeds. The scikit-learn
imputers see biopsy's ordinal levels as numbers and their fills are rounded to the nearest
level; the Imputer treats them as categories.

A cell of a table is a **win** for the Imputer when its mean is lower than the best
scikit-learn imputer's by more than one SD (the larger of the two SDs over seeds), a
**loss** when higher by more than that, else a tie. Times are fit + transform, median
over seeds. ``Imputer`` is the default, ``model="auto"`` (the Gaussian mixture and MIWAE
blended per column); ``Imputer-gaussian`` and ``Imputer-miwae`` fit one of them alone;
``Imputer-mix`` adds the MissForest-like to the blend
(``model=["gaussian", "miwae", "missforest"]``).
Calibration: the fraction of removed numeric test cells whose true value lies inside the
5%-95% quantiles of ``--draws`` multiple imputations (``Imputer.sample``).

    .venv/bin/python benchmarks/imputer.py                       # every table and mechanism, 3 seeds
    .venv/bin/python benchmarks/imputer.py --data breast_cancer --settings "mcar 0.5" --seeds 0 1 2
    .venv/bin/python benchmarks/imputer.py --imputers Imputer Imputer-gaussian Imputer-mix MICE --data wine
    .venv/bin/python benchmarks/imputer.py --speed 3               # fit + transform time against IterativeImputer
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.model_selection import train_test_split
from tabular import corrupt, load

import polymodal as pm
from polymodal.metrics import nrmse, pfc

SETTINGS = ["mcar 0.3", "mcar 0.5", "mar 0.5", "mnar 0.5"]
CLASSICAL = ("mean", "mode", "KNN", "MICE", "MissForest", "HyperImpute")


def imputers(seed: int) -> dict[str, Callable[[], object]]:
    return {
        "Imputer": lambda: pm.Imputer(random_state=seed),
        "Imputer-gaussian": lambda: pm.Imputer(model="gaussian", random_state=seed),
        "Imputer-miwae": lambda: pm.Imputer(model="miwae", random_state=seed),
        "Imputer-mix": lambda: pm.Imputer(model=["gaussian", "miwae", "missforest"], random_state=seed),
        "mean": lambda: SimpleImputer(),
        "mode": lambda: SimpleImputer(strategy="most_frequent"),
        "KNN": lambda: KNNImputer(),
        "MICE": lambda: IterativeImputer(max_iter=10, random_state=seed),
        "MissForest": lambda: IterativeImputer(ExtraTreesRegressor(n_estimators=50, random_state=seed, n_jobs=1),
                                               max_iter=10, random_state=seed),
        "HyperImpute": lambda: hyperimpute(seed),
    }


class hyperimpute:
    """HyperImpute's default imputer (its own column-wise model search), with numpy out; only
    in its own environment (``pip install hyperimpute`` beside the CPU torch, not in .venv)."""

    def __init__(self, seed: int):
        from hyperimpute.plugins.imputers import Imputers

        self.plugin = Imputers().get("hyperimpute", random_state=seed)

    def fit(self, x: np.ndarray) -> hyperimpute:
        self.plugin.fit(pd.DataFrame(x))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.plugin.transform(pd.DataFrame(x)), dtype=float)


def run(name: str, setting: str, seed: int, chosen: list[str], draws: int) -> dict[str, tuple[float, float, float]]:
    """{imputer: (score, seconds, 90% coverage or NaN)} for one table, setting and seed."""
    mechanism, rate = setting.split()
    table, categorical = load(name)
    if categorical:
        table = table.astype(int)
    else:
        table = (table - table.min()) / (table.max() - table.min()).replace(0, 1)
    train_idx, test_idx = train_test_split(np.arange(len(table)), test_size=0.2, random_state=seed)
    g = torch.Generator().manual_seed(seed)
    train, test = table.iloc[train_idx].reset_index(drop=True), table.iloc[test_idx].reset_index(drop=True)
    train_obs, test_obs = corrupt(train, mechanism, float(rate), g), corrupt(test, mechanism, float(rate), g)
    train_in, test_in = train.mask(~train_obs), test.mask(~test_obs)
    truth, removed = test.to_numpy(float), ~test_obs
    score = pfc if categorical else nrmse
    levels = np.sort(np.unique(table.to_numpy()))
    results = {}
    for label, make in imputers(seed).items():
        if label not in chosen:
            continue
        imputer = make()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(imputer, pm.Imputer):
                same = pd.CategoricalDtype(levels)  # the same categories in both frames
                fit_on, fill = (train_in.astype(same), test_in.astype(same)) if categorical else (train_in, test_in)
                filled = imputer.fit(fit_on).transform(fill).to_numpy(float)
            else:
                filled = imputer.fit(train_in.to_numpy(float)).transform(test_in.to_numpy(float))
                if categorical:  # the nearest level
                    filled = levels[np.abs(filled[..., None] - levels).argmin(-1)]
        seconds = time.perf_counter() - start
        coverage = np.nan
        if label.startswith("Imputer") and draws and not categorical:
            sampled = imputer.sample(test_in, draws)
            stacked = np.stack([s.to_numpy(float) for s in sampled])
            low, high = np.quantile(stacked, [0.05, 0.95], axis=0)
            coverage = float(((truth >= low) & (truth <= high))[removed].mean())
        results[label] = (score(filled, truth, removed), seconds, coverage)
    return results


def speed(repeats: int) -> None:
    """Fit + transform on breast cancer at 50% MCAR (seed 0): the default Imputer, the
    Gaussian mixture alone and IterativeImputer(max_iter=10) side by side, ``repeats`` times;
    where the default Imputer's time went."""
    table, _ = load("breast_cancer")
    table = (table - table.min()) / (table.max() - table.min())
    train_idx, test_idx = train_test_split(np.arange(len(table)), test_size=0.2, random_state=0)
    g = torch.Generator().manual_seed(0)
    train, test = table.iloc[train_idx].reset_index(drop=True), table.iloc[test_idx].reset_index(drop=True)
    train_in, test_in = train.mask(~corrupt(train, "mcar", 0.5, g)), test.mask(~corrupt(test, "mcar", 0.5, g))
    times: dict[str, list[float]] = {"Imputer": [], "Imputer-gaussian": [], "IterativeImputer": [],
                                     "Imputer: MIWAE's training steps": [], "Imputer: Gaussian mixtures' EM": [],
                                     "Imputer: transform": []}
    for _ in range(repeats):
        for label, model in (("Imputer", "auto"), ("Imputer-gaussian", "gaussian")):
            start = time.perf_counter()
            imputer = pm.Imputer(model=model).fit(train_in)
            fitted = time.perf_counter()
            imputer.transform(test_in)
            times[label].append(time.perf_counter() - start)
            if model == "auto":
                times["Imputer: transform"].append(time.perf_counter() - fitted)
                times["Imputer: MIWAE's training steps"].append(float(imputer.histories_["miwae"]["seconds"].sum()))
                times["Imputer: Gaussian mixtures' EM"].append(float(imputer.histories_["gaussian"]["seconds"].sum()))
                steps = len(imputer.histories_["miwae"]) * math.ceil(len(train_in) / 256)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            IterativeImputer(max_iter=10, random_state=0).fit(train_in).transform(test_in)
        times["IterativeImputer"].append(time.perf_counter() - start)
    print(f"MIWAE steps run: {steps}")
    for label, values in times.items():
        print(f"{label}: median {statistics.median(values):.2f} s, runs " + " / ".join(f"{v:.2f}" for v in values))
    for label in ("Imputer", "Imputer-gaussian"):
        ratio = statistics.median(times[label]) / statistics.median(times["IterativeImputer"])
        print(f"{label} / IterativeImputer: {ratio:.1f}x (target <= 3x)")


def verdict(ours: list[float], best: list[float]) -> str:
    gap = statistics.mean(ours) - statistics.mean(best)
    spread = max(statistics.stdev(ours), statistics.stdev(best)) if len(ours) > 1 else 0.0
    return "win" if gap < -spread else "loss" if gap > spread else "tie"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["breast_cancer", "wine", "glass", "biopsy"])
    parser.add_argument("--settings", nargs="+", default=SETTINGS, help='"mechanism rate", e.g. "mcar 0.3"')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--imputers", nargs="+", default=["Imputer", "mean", "mode", "KNN", "MICE", "MissForest"],
                        choices=list(imputers(0)))
    parser.add_argument("--draws", type=int, default=50, help="multiple imputations for the calibration (0: none)")
    parser.add_argument("--speed", type=int, metavar="REPEATS", help="only the speed comparison, REPEATS times")
    args = parser.parse_args()
    if args.speed:
        speed(args.speed)
        return
    start = time.perf_counter()
    ours = [label for label in args.imputers if label.startswith("Imputer")]
    print(f"polymodal {pm.__version__}, torch {torch.__version__}, scikit-learn {__import__('sklearn').__version__}")
    for name in args.data:
        scores: dict[str, dict[str, list[float]]] = {}
        seconds: dict[str, list[float]] = {}
        coverage: dict[str, list[float]] = {}
        for setting in args.settings:
            for seed in args.seeds:
                for label, (value, took, covered) in run(name, setting, seed, args.imputers, args.draws).items():
                    scores.setdefault(label, {}).setdefault(setting, []).append(value)
                    seconds.setdefault(label, []).append(took)
                    if not np.isnan(covered):
                        coverage.setdefault(label, []).append(covered)
            print(f"{name} {setting}: " + ", ".join(f"{k} {statistics.mean(v[setting]):.3f}" for k, v in scores.items()),
                  flush=True)
        metric = "PFC" if load(name)[1] else "NRMSE"
        print(f"\n{name} ({metric}, mean ± SD over seeds {args.seeds}; time: median fit + transform)\n")
        print("| imputer | " + " | ".join(args.settings) + " | time (s) |\n|---|" + "---|" * (len(args.settings) + 1))
        for label, row in scores.items():
            cells = [f"{statistics.mean(row[s]):.3f} ± {statistics.stdev(row[s]) if len(row[s]) > 1 else 0:.3f}"
                     for s in args.settings]
            print(f"| {label} | " + " | ".join(cells) + f" | {statistics.median(seconds[label]):.2f} |")
        classical = [label for label in CLASSICAL if label in scores]
        for label in ours:
            if classical and label in scores:
                marks = []
                for s in args.settings:
                    best = min(classical, key=lambda c: statistics.mean(scores[c][s]))
                    marks.append(f"{verdict(scores[label][s], scores[best][s])} (vs {best})")
                print(f"| {label} against the best scikit-learn imputer | " + " | ".join(marks) + " | |")
        for label, covered in coverage.items():
            print(f"\n{label}: 90% interval of {args.draws} draws covers {statistics.mean(covered):.3f} of the removed "
                  f"cells (min {min(covered):.3f}, max {max(covered):.3f} over settings and seeds)")
        print()
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
