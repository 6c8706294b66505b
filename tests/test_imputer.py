import numpy as np
import pandas as pd
import pytest
import torch
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
        imputer = pm.Imputer(steps=40, batch_size=200, samples=5, **options).fit(x)
        assert np.isnan(imputer.validation_score_) and len(imputer.histories_["miwae"]) == 2  # epochs of 20 steps
        assert "valid_score" not in imputer.histories_["miwae"]
    with pytest.raises(pm.ConfigError, match="holdout must be a fraction"):
        pm.Imputer(holdout=1.0).fit(x)
    with pytest.raises(pm.ConfigError, match="steps must be an integer >= 1"):
        pm.Imputer(steps=0).fit(x)
    with pytest.raises(pm.ConfigError, match="round_integers must be True or False, got 'yes'"):
        pm.Imputer(round_integers="yes").fit(x)


def test_a_column_whose_only_cells_fall_in_the_held_out_cells_still_trains_and_fills():
    x = pd.DataFrame(np.random.default_rng(0).random((60, 3)), columns=["a", "b", "c"])
    x["c"] = np.nan
    x.loc[5, "c"] = 0.3
    for seed in range(3):  # seeds 0 and 1 hold out row 5's cell of c (the mixture then had no cell of c to fit)
        imputer = pm.Imputer(validation=0.9, holdout=0.9, steps=20, random_state=seed).fit(x)
        assert np.isnan(imputer.candidate_scores_.loc["c"]).all()  # c's cell was given back, not scored
        assert imputer.transform(x)["c"].notna().all()


def test_multiple_imputations_match_the_closed_form_conditional_of_a_gaussian():
    rho, n = 0.8, 1200
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal(n)
    x = np.stack([x1, rho * x1 + np.sqrt(1 - rho**2) * rng.standard_normal(n)], 1)
    x[rng.random(n) < 0.4, 1] = np.nan
    rows = np.isnan(x[:, 1])[:300]
    miwae = pm.Imputer("miwae", numeric={"name": "gaussian", "learn_scale": True},
                       model_options={"latent_dim": 2, "hidden": (32,)}, batch_size=128, steps=1500, samples=200).fit(x)
    for imputer, tolerance in ((miwae, 0.3), (pm.Imputer("gaussian").fit(x), 0.1)):  # MIWAE stops early, near 100 steps
        draws = imputer.sample(x[:300], draws=300)
        assert draws.shape == (300, 300, 2) and (draws[:, ~rows] == x[:300][~rows]).all()
        mean, sd = draws[:, rows, 1].mean(0), draws[:, rows, 1].std(0)
        assert np.abs(mean - rho * x[:300][rows, 0]).mean() < 0.2  # MIWAE's: 0.05-0.17 over seeds 0-2
        assert np.median(sd) == pytest.approx(np.sqrt(1 - rho**2), rel=tolerance)
        spread = imputer.predictive_std(x[:300], draws=300)
        assert (spread[~rows, 1] == 0).all() and (spread[:, 0] == 0).all()
        assert np.median(spread[rows, 1]) == pytest.approx(np.sqrt(1 - rho**2), rel=tolerance)


def test_auto_blends_per_column_the_candidates_on_their_held_out_cells(tmp_path, monkeypatch):
    frame, x, _ = wine_table()
    table = pd.DataFrame(x, columns=frame.columns)
    table["kind"] = pd.Series(np.where(frame["alcohol"] > 13, "strong", "light"), dtype="category")
    imputer = pm.Imputer(steps=60, samples=20).fit(table)
    scores, weights = imputer.candidate_scores_, imputer.weights_
    assert list(scores.columns) == ["gaussian", "miwae"] and list(scores.index) == list(table.columns)
    assert np.isnan(scores.loc["kind", "gaussian"]) and weights.loc["kind"].to_dict() == {"gaussian": 0.0, "miwae": 1.0}
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights * 10, (weights * 10).round(), atol=1e-9)  # multiples of WEIGHT_STEP
    assert (imputer.choice_ == weights.idxmax(axis=1)).all() and imputer.sampler_ == "miwae"
    for c in table.columns:  # a column given wholly to one candidate scores exactly as that candidate does
        if weights.loc[c].max() == 1.0:
            assert imputer.validation_scores_[c] == pytest.approx(scores.loc[c, imputer.choice_[c]])
    assert list(imputer.histories_["gaussian"].columns) == ["components", "ridge", "rows", "valid_score", "iterations",
                                                            "seconds"]
    filled = imputer.transform(table)
    assert not filled.isna().any().any()
    loaded = pm.load_imputer(imputer.save(tmp_path / "auto"))
    pd.testing.assert_frame_equal(loaded.transform(table), filled)
    pd.testing.assert_frame_equal(loaded.weights_, weights)
    assert loaded.sample(table, 2)[1].equals(imputer.sample(table, 2)[1])
    # with shrinkage towards the table outweighing every column's own cells, all numeric columns blend alike
    monkeypatch.setattr(pm.imputer, "SHRINK_CELLS", 1e9)
    alike = pm.Imputer(steps=60, samples=20).fit(table).weights_.drop(index="kind")
    assert (alike.nunique() == 1).all()


def test_the_gaussian_grid_is_compared_on_a_subsample_and_only_the_chosen_mixture_refitted(monkeypatch):
    _, x, _ = wine_table()
    monkeypatch.setattr(pm.candidates, "GRID_ROWS", 100)
    history = pm.Imputer(model="gaussian").fit(x).histories_["gaussian"]
    tried, refit = history.iloc[:-1], history.iloc[-1]
    assert len(tried) == len(pm.candidates.GAUSSIAN_GRID) and (tried["rows"] == 100).all()
    best = tried.loc[tried["valid_score"].idxmin()]
    assert refit["rows"] == len(x) and (refit["components"], refit["ridge"]) == (best["components"], best["ridge"])
    monkeypatch.setattr(pm.candidates, "GRID_ROWS", len(x))  # a table no larger than the subsample: no refit
    assert len(pm.Imputer(model="gaussian").fit(x).histories_["gaussian"]) == len(pm.candidates.GAUSSIAN_GRID)


def test_candidate_lists_cellwise_models_and_what_cannot_be_saved(tmp_path):
    frame, x, _ = wine_table()
    table = pd.DataFrame(x, columns=frame.columns)
    trio = pm.Imputer(model=["gaussian", "zerofill-vae", "iterative"], steps=40, samples=20).fit(table)
    assert list(trio.candidate_scores_.columns) == ["gaussian", "zerofill-vae", "iterative"]
    assert trio.sampler_ == "gaussian"  # its spread is fitted; the draws of a table with categories come from a model
    assert not trio.transform(table).isna().any().any()
    with pytest.raises(pm.ConfigError, match="only pickle"):
        trio.save(tmp_path / "trio")
    with pytest.raises(pm.ConfigError, match="need a generative model"):
        pm.Imputer(model=["iterative", "missforest"]).fit(table)
    gaussian = pm.Imputer(model="gaussian").fit(table)
    assert set(gaussian.models_) == {"gaussian"} and gaussian.validation_score_ < 0.9
    pd.testing.assert_frame_equal(pm.load_imputer(gaussian.save(tmp_path / "gaussian")).transform(table),
                                  gaussian.transform(table))
    table["kind"] = pd.Series(np.where(frame["alcohol"] > 13, "strong", "light"), dtype="category")
    with pytest.raises(pm.ConfigError, match=r"fills numeric columns only, and \['kind'\] are categorical"):
        pm.Imputer(model="gaussian").fit(table)


def mixed_table(n=700, seed=0):
    """Numeric columns driven by one factor, a category that follows it, 20% holes."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    frame = pd.DataFrame({f"x{j}": z * (j + 1) + rng.standard_normal(n) for j in range(4)})
    frame["kind"] = pd.Series(np.where(z > 0, "up", "down"), dtype="category")
    return frame.mask(rng.random(frame.shape) < 0.2)


def test_transform_in_chunks_equals_the_whole_table_transform(monkeypatch):
    table = mixed_table()
    imputer = pm.Imputer(steps=40, samples=20).fit(table)
    whole = imputer.transform(table)  # 700 rows in one chunk
    monkeypatch.setattr(pm.imputer, "CHUNK_ROWS", 256)
    pd.testing.assert_frame_equal(imputer.transform(table), whole)
    parts = imputer.transform_chunks(table.iloc[start : start + 512] for start in range(0, 700, 512))
    pd.testing.assert_frame_equal(pd.concat(list(parts)), whole)
    drawn = imputer.sample(table, 2)
    monkeypatch.setattr(pm.imputer, "CHUNK_ROWS", 1024)
    pd.testing.assert_frame_equal(imputer.sample(table, 2)[1], drawn[1])


def test_a_save_replaces_whatever_imputer_the_folder_held(tmp_path, monkeypatch):
    table = mixed_table().drop(columns="kind")
    folder = tmp_path / "imputer"
    pm.Imputer(model=["gaussian", "zerofill-vae"], steps=20, samples=5).fit(table).save(folder)
    gaussian = pm.Imputer(model="gaussian").fit(table)
    gaussian.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["gaussian", "imputer.json", "transform.json"]
    loaded = pm.load_imputer(folder)
    assert set(loaded.models_) == {"gaussian"}
    pd.testing.assert_frame_equal(loaded.transform(table), gaussian.transform(table))
    assert not list(tmp_path.glob(".imputer*"))  # no temporary folder left beside it
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(pm.ModelFileError, match="notes is not an empty folder nor a saved one"):
        gaussian.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    def full(self, folder):
        raise OSError("disk full")

    monkeypatch.setattr(pm.candidates.GaussianCandidate, "save", full)
    with pytest.raises(OSError, match="disk full"):  # a failed save leaves the folder as it was
        pm.Imputer(model="gaussian", random_state=1).fit(table).save(folder)
    pd.testing.assert_frame_equal(pm.load_imputer(folder).transform(table), gaussian.transform(table))
    assert not list(tmp_path.glob(".imputer*"))


def test_each_kind_of_candidate_saves_and_loads_through_persistence(tmp_path):
    from polymodal.candidates import GaussianCandidate, IterativeCandidate, ModelCandidate

    table = mixed_table().drop(columns="kind")
    tables = pm.TableSchema().fit(table)
    batch = tables.transform(table)
    for candidate in (ModelCandidate("miwae", steps=20), GaussianCandidate()):
        candidate.fit(batch, None)
        candidate.save(tmp_path / candidate.name)
        assert sorted(p.name for p in (tmp_path / candidate.name).iterdir()) == ["config.json", "model.safetensors"]
        loaded = type(candidate).load(tmp_path / candidate.name, "cpu")
        for a, b in ((candidate.fill(batch, 10, 3), loaded.fill(batch, 10, 3)),
                     (candidate.sample(batch, 2, 10, 3)[1], loaded.sample(batch, 2, 10, 3)[1])):
            for name in batch.schema.names:
                assert torch.equal(a.values[name], b.values[name])
    iterative = IterativeCandidate("iterative").fit(batch, None)
    assert not np.isnan(pm.candidates.cells(iterative.fill(batch, 0, 0))).any()
    with pytest.raises(pm.ConfigError, match="only pickles"):
        iterative.save(tmp_path / "iterative")
    with pytest.raises(pm.ModelFileError, match="never saved"):
        IterativeCandidate.load(tmp_path / "iterative", "cpu")


@pytest.mark.parametrize("tamper, message", [
    (lambda s: s.pop("weights"), "KeyError"),
    (lambda s: s["candidates"].update(gaussian="forest"), r"unknown kinds \{'gaussian': 'forest'\}"),
    (lambda s: s.update(sampler="vsae"), "the sampler 'vsae' is not one of its candidates"),
    (lambda s: s["weights"]["x0"].update(gaussian=2.0), "weights must be non-negative numbers that sum to 1"),
    (lambda s: s["weights"].pop("x1"), r"weights for columns \['x0', 'x2', 'x3'\]"),
    (lambda s: s["params"].update(samples=-3), "samples must be an integer >= 0"),
    (lambda s: s.update(params=[1, 2]), "imputer.json is corrupt"),
])
def test_a_tampered_imputer_json_is_an_error_naming_the_file(tmp_path, tamper, message):
    import json

    table = mixed_table().drop(columns="kind")
    folder = pm.Imputer(model="gaussian").fit(table).save(tmp_path / "imputer")
    saved = json.loads((folder / "imputer.json").read_text())
    tamper(saved)
    (folder / "imputer.json").write_text(json.dumps(saved))
    with pytest.raises(pm.ModelFileError, match=rf"imputer\.json is corrupt: .*{message}|{message}"):
        pm.load_imputer(folder)
    (folder / "imputer.json").write_text("{not json")
    with pytest.raises(pm.ModelFileError, match=r"imputer\.json is corrupt"):
        pm.load_imputer(folder)
