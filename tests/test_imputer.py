import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import polymodal as pm

FAST = {"epochs": 5, "samples": 10, "validation": 0.0}


def holes(x, rate=0.3, seed=0):
    x = np.array(x, dtype=float)
    removed = np.random.default_rng(seed).random(x.shape) < rate
    x[removed] = np.nan
    return x, removed


def wine_table():
    frame = load_wine(as_frame=True).frame.drop(columns="target")
    return frame, *holes(frame.to_numpy())


def test_fills_every_hole_and_keeps_observed_cells_exactly():
    _, x, removed = wine_table()
    filled = pm.Imputer(**FAST).fit(x).transform(x)
    assert isinstance(filled, np.ndarray) and filled.shape == x.shape and not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[~removed], x[~removed])


def test_learns_better_than_the_column_mean_from_the_incomplete_table_alone():
    truth, x, removed = wine_table()
    truth = truth.to_numpy()
    scale = np.nanstd(truth, 0)
    error = {}
    for name, imputer in {"model": pm.Imputer(epochs=150, samples=200), "mean": SimpleImputer()}.items():
        filled = imputer.fit(x).transform(x)
        error[name] = np.sqrt(np.mean(((filled - truth) / scale)[removed] ** 2))
    assert error["model"] < 0.9 * error["mean"]


def test_dataframes_keep_index_columns_and_categories():
    frame, x, _ = wine_table()
    table = pd.DataFrame(x, columns=frame.columns, index=frame.index + 100)
    table["kind"] = pd.Series(np.where(frame["alcohol"] > 13, "strong", "light"), index=table.index, dtype="category")
    table.loc[table.index[::4], "kind"] = np.nan
    imputer = pm.Imputer(**FAST).fit(table)
    filled = imputer.transform(table)
    assert list(filled.columns) == list(table.columns) and filled.index.equals(table.index)
    assert not filled.isna().any().any() and set(filled["kind"]) <= {"strong", "light"}
    assert list(imputer.get_feature_names_out()) == [str(c) for c in table.columns]


def test_follows_the_scikit_learn_estimator_contract():
    imputer = pm.Imputer(model="vsae", epochs=3)
    copy = clone(imputer)
    assert copy.get_params() == imputer.get_params() and copy is not imputer
    frame, x, _ = wine_table()
    target = load_wine().target
    pipeline = make_pipeline(pm.Imputer(**FAST), StandardScaler(), LogisticRegression()).fit(x, target)
    assert pipeline.predict(x).shape == target.shape


def test_bad_input_raises_a_clear_error():
    _, x, _ = wine_table()
    with pytest.raises(pm.ConfigError, match="model must be one of"):
        pm.Imputer(model="nope").fit(x)
    x[:, 2] = np.nan
    with pytest.raises(pm.DataError, match="no observed value"):
        pm.Imputer(**FAST).fit(x)
    fitted = pm.Imputer(**FAST).fit(x[:, :2])
    with pytest.raises(ValueError, match="expecting 2 features"):
        fitted.transform(x)


def test_save_and_load_imputer_give_the_same_fills(tmp_path):
    import torch

    frame, x, _ = wine_table()
    table = pd.DataFrame(x, columns=frame.columns)
    imputer = pm.Imputer(**FAST).fit(table)
    imputer.save(tmp_path / "imputer")
    loaded = pm.load_imputer(tmp_path / "imputer")
    assert loaded.get_params() == imputer.get_params() and list(loaded.feature_names_in_) == list(table.columns)
    torch.manual_seed(0)
    expected = imputer.transform(table)
    torch.manual_seed(0)
    pd.testing.assert_frame_equal(loaded.transform(table), expected)
