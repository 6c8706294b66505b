"""`polymodal impute --fit` on a CSV with holes, next to scikit-learn's IterativeImputer.

scikit-learn's breast cancer table (569 rows, 30 numeric columns) with a fraction of its
cells removed completely at random (seeded), written as a CSV. Both imputers fill that file
in the same run: polymodal through the command line as a user runs it (a subprocess, so its
time includes starting Python and importing torch, measured apart as `polymodal --help`),
IterativeImputer (default settings, max_iter=10) in this process, reading and writing the
same files. Scores on the removed cells only: RMSE of min-max scaled values (each column
scaled by the range of its true values), and the library's NRMSE (RMSE / std per column,
averaged over columns). The column mean is given for scale.

    python -m benchmarks.cli_impute [--rate 0.3] [--seed 0] [--steps N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn.datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer

from benchmarks.results import Run, record_options
from polymodal.metrics import nrmse

POLYMODAL = [sys.executable, "-m", "polymodal"]


def scores(filled: pd.DataFrame, truth: pd.DataFrame, removed: np.ndarray) -> tuple[float, float]:
    x, t = filled.to_numpy(dtype=float), truth.to_numpy(dtype=float)
    low, span = t.min(0), t.max(0) - t.min(0)
    scaled = ((x - low) / span - (t - low) / span)[removed]
    return float(np.sqrt(np.mean(scaled**2))), nrmse(x, t, removed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="most training steps (default: the Imputer's, sized to the table)")
    args = record_options(parser).parse_args()
    truth = sklearn.datasets.load_breast_cancer(as_frame=True).frame.drop(columns="target")
    removed = np.random.default_rng(args.seed).random(truth.shape) < args.rate
    run = Run("cli_impute", args, title="polymodal impute --fit on a CSV with holes",
              description=f"scikit-learn's breast cancer table ({truth.shape[0]} rows x {truth.shape[1]} columns) with "
                          f"{removed.mean():.1%} of its cells removed completely at random, written as a CSV and filled "
                          "by each imputer from the file; scored on the removed cells.")
    folder = Path(tempfile.mkdtemp(prefix="cli-impute-"))
    source = folder / "breast_cancer_holes.csv"
    truth.mask(removed).to_csv(source, index=False)

    table = "imputers"
    run.table(table, "wall time includes reading and writing the files; polymodal's includes starting Python "
                     "(measured alone as `polymodal --help`)")
    start = time.perf_counter()
    subprocess.run([*POLYMODAL, "--help"], check=True, capture_output=True)
    run.add(table, row="`polymodal --help` (Python start, imports)", column="wall time (s)",
            value=time.perf_counter() - start, seed=args.seed)
    filled = {}
    start = time.perf_counter()
    steps = [] if args.steps is None else ["--steps", str(args.steps)]
    command = [*POLYMODAL, "impute", "--fit", str(source), "-o", str(folder / "polymodal.csv"), *steps,
               "--seed", str(args.seed), "--quiet"]
    subprocess.run(command, check=True)
    name = "polymodal impute --fit (auto)"
    run.add(table, row=name, column="wall time (s)", value=time.perf_counter() - start, seed=args.seed)
    filled[name] = pd.read_csv(folder / "polymodal.csv")
    for name, imputer in {"IterativeImputer": IterativeImputer(random_state=args.seed), "column mean": SimpleImputer()}.items():
        start = time.perf_counter()
        frame = pd.read_csv(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pd.DataFrame(imputer.fit_transform(frame), columns=frame.columns).to_csv(folder / f"{name}.csv", index=False)
        run.add(table, row=name, column="wall time (s)", value=time.perf_counter() - start, seed=args.seed)
        filled[name] = pd.read_csv(folder / f"{name}.csv")
    for name, frame in filled.items():
        scaled, normalised = scores(frame, truth, removed)
        run.add(table, row=name, column="RMSE, min-max scaled", value=scaled, seed=args.seed)
        run.add(table, row=name, column="NRMSE (RMSE / std)", value=normalised, seed=args.seed)
    run.save()


if __name__ == "__main__":
    main()
