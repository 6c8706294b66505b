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

FAST = {"steps": 5, "samples": 10, "validation": 0.0}


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
    for name, imputer in {"model": pm.Imputer(steps=400, samples=200), "mean": SimpleImputer()}.items():
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
    imputer = pm.Imputer(model="vsae", steps=3)
    copy = clone(imputer)
    assert copy.get_params() == imputer.get_params() and copy is not imputer
    frame, x, _ = wine_table()
    target = load_wine().target
    pipeline = make_pipeline(pm.Imputer(**FAST), StandardScaler(), LogisticRegression()).fit(x, target)
    assert pipeline.predict(x).shape == target.shape


def test_bad_input_raises_a_clear_error():
    _, x, _ = wine_table()
    with pytest.raises(pm.ConfigError, match="model must be 'auto', one of"):
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


def test_held_out_cells_score_the_imputation_per_column_and_overall(tmp_path):
    frame, x, _ = wine_table()
    table = pd.DataFrame(x, columns=frame.columns)
    table["kind"] = pd.Series(np.where(frame["alcohol"] > 13, "strong", "light"), dtype="category")
    imputer = pm.Imputer(steps=300, samples=20).fit(table)
    scores = imputer.validation_scores_
    assert list(scores.index) == list(table.columns) and np.isfinite(scores).all()
    assert imputer.validation_score_ == pytest.approx(scores.mean())
    assert 0 <= scores["kind"] <= 1  # PFC
    assert scores.drop("kind").mean() < 0.9  # NRMSE: the column mean scores about 1
    history = imputer.histories_["miwae"]
    assert history["valid_score"].notna().sum() >= 2 and history["valid_score"].min() < history["valid_score"].dropna().iloc[0]
    again = pm.Imputer(steps=300, samples=20).fit(table)
    assert again.validation_score_ == imputer.validation_score_
    assert pm.Imputer(steps=300, samples=20, random_state=1).fit(table).validation_score_ != imputer.validation_score_
    loaded = pm.load_imputer(imputer.save(tmp_path / "imputer"))
    pd.testing.assert_series_equal(loaded.validation_scores_, scores)
    assert loaded.validation_score_ == pytest.approx(imputer.validation_score_)


def test_without_held_out_cells_all_steps_run_and_the_score_is_nan():
    _, x, _ = wine_table()
    for options in ({"validation": 0.0}, {"holdout": 0.0}, {"patience": None}):
        imputer = pm.Imputer(steps=7, batch_size=200, samples=5, **options).fit(x)
        assert np.isnan(imputer.validation_score_) and len(imputer.histories_["miwae"]) == 7
        assert "valid_score" not in imputer.histories_["miwae"]
    with pytest.raises(pm.ConfigError, match="holdout must be a fraction"):
        pm.Imputer(holdout=1.0).fit(x)
    with pytest.raises(pm.ConfigError, match="steps must be an integer >= 1"):
        pm.Imputer(steps=0).fit(x)


def test_multiple_imputations_match_the_closed_form_conditional_of_a_gaussian():
    rho, n = 0.8, 1200
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal(n)
    x = np.stack([x1, rho * x1 + np.sqrt(1 - rho**2) * rng.standard_normal(n)], 1)
    x[rng.random(n) < 0.4, 1] = np.nan
    imputer = pm.Imputer(numeric={"name": "gaussian", "learn_scale": True}, model_options={"latent_dim": 2, "hidden": (32,)},
                         batch_size=128, steps=1500, samples=200).fit(x)
    rows = np.isnan(x[:, 1])[:300]
    draws = imputer.sample(x[:300], draws=300)
    assert draws.shape == (300, 300, 2) and (draws[:, ~rows] == x[:300][~rows]).all()
    mean, sd = draws[:, rows, 1].mean(0), draws[:, rows, 1].std(0)
    assert np.abs(mean - rho * x[:300][rows, 0]).mean() < 0.15
    assert np.median(sd) == pytest.approx(np.sqrt(1 - rho**2), rel=0.25)
    spread = imputer.predictive_std(x[:300], draws=300)
    assert (spread[~rows, 1] == 0).all() and (spread[:, 0] == 0).all()
    assert np.median(spread[rows, 1]) == pytest.approx(np.sqrt(1 - rho**2), rel=0.25)


def test_auto_keeps_per_column_the_candidate_with_the_best_held_out_score(tmp_path):
    frame, x, _ = wine_table()
    table = pd.DataFrame(x, columns=frame.columns)
    table["kind"] = pd.Series(np.where(frame["alcohol"] > 13, "strong", "light"), dtype="category")
    imputer = pm.Imputer(model="auto", steps=40, samples=20).fit(table)
    scores = imputer.candidate_scores_
    assert list(scores.columns) == list(pm.imputer.AUTO_CANDIDATES) and list(scores.index) == list(table.columns)
    assert imputer.choice_["kind"] not in pm.imputer.CLASSICAL and np.isnan(scores.loc["kind", "iterative"])
    chosen = [scores.loc[c, imputer.choice_[c]] for c in table.columns]
    np.testing.assert_array_equal(imputer.validation_scores_, chosen)
    # a column leaves the candidate best on the whole table only for one at least as good on its own cells
    numeric = scores.drop(index="kind")
    best = numeric.mean().idxmin()
    for c in numeric.index:
        assert imputer.choice_[c] == best or numeric.loc[c, imputer.choice_[c]] <= numeric.loc[c, best]
    filled = imputer.transform(table)
    assert not filled.isna().any().any()
    assert set(imputer.models_) == set(imputer.choice_)
    with pytest.raises(pm.ConfigError, match="model='auto' combines several models"):
        imputer.save(tmp_path / "auto")
    pair = pm.Imputer(model=["zerofill-vae", "iterative"], steps=40, samples=20).fit(table)
    assert list(pair.candidate_scores_.columns) == ["zerofill-vae", "iterative"] and pair.choice_["kind"] == "zerofill-vae"
    with pytest.raises(pm.ConfigError, match="need a polymodal model"):
        pm.Imputer(model=["iterative"]).fit(table)
