"""Scores on hidden entries beside the simple baselines, checked against hand computations."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import polymodal as pm
from polymodal.commands import held_out_cells, imputer_lines, score_lines
from polymodal.evaluation import (
    Evaluation,
    baseline_fills,
    column_scores,
    evaluate,
    imputation_scores,
    interpolate,
    locf,
    with_baselines,
)

NAN = float("nan")

TABLE = pm.Schema([pm.Modality("a"), pm.Modality("g", (2,)), pm.Modality("k", (), "categorical", num_classes=3)])


def table():
    """Five rows; rows 0 and 3 of ``a`` and ``k`` and three cells of ``g`` are hidden."""
    g = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 4.0], [3.0, 8.0], [4.0, NAN]])
    truth = pm.Batch.from_data(TABLE, {"a": np.array([1.0, 2.0, 3.0, 10.0, NAN]), "g": g,
                                       "k": np.array([0.0, 1.0, 1.0, 2.0, 1.0])})
    keep = torch.tensor([False, True, True, False, True])
    kept_g = torch.tensor([[False, True], [True, True], [True, False], [False, True], [True, True]])
    held = truth.with_observed({"a": truth.observed["a"] & keep, "k": keep, "g": truth.observed["g"] & kept_g})
    return truth, held


def filled(truth, values):
    return pm.Batch(truth.schema, {**truth.values, **values}, {k: torch.ones_like(m) for k, m in truth.observed.items()})


def test_table_baselines_are_the_column_mean_and_mode():
    truth, held = table()
    fills = baseline_fills(held)
    assert fills["a"]["mean"].tolist() == [2.5, 2.0, 3.0, 2.5, 2.5]  # the mean of the kept 2 and 3
    assert fills["k"]["mode"].tolist() == [1, 1, 1, 1, 1]
    expected = [[7 / 3, 1.0], [1.0, 2.0], [2.0, 11 / 3], [7 / 3, 8.0], [4.0, 11 / 3]]  # kept: 1, 2, 4 and 1, 2, 8
    np.testing.assert_allclose(fills["g"]["mean"].numpy(), expected, rtol=1e-6)


def test_scores_stand_beside_the_baselines_on_the_same_cells():
    truth, held = table()
    guess = filled(truth, {"a": torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0]), "k": torch.tensor([0, 1, 1, 1, 1])})
    scores = with_baselines(imputation_scores(truth, held, guess), truth, held)
    spread = np.std([1.0, 2.0, 3.0, 10.0])
    # a: the model misses 10 by 6, the mean 2.5 misses 1 by 1.5 and 10 by 7.5
    assert scores["a"]["nrmse"] == pytest.approx(math.sqrt(36 / 2) / spread)
    assert scores["a"]["baselines"] == {"mean": {"nrmse": pytest.approx(math.sqrt((1.5**2 + 7.5**2) / 2) / spread)}}
    assert scores["a"]["entries"] == 2 and scores["a"]["worse_than"] == []
    # k: the model gets row 0 right and row 3 wrong; the mode (1) gets both wrong
    assert scores["k"]["pfc"] == 0.5 and scores["k"]["baselines"] == {"mode": {"accuracy": 0.0, "pfc": 1.0}}
    assert scores["k"]["worse_than"] == []


def test_a_score_worse_than_its_baseline_is_flagged():
    truth, held = table()
    guess = filled(truth, {"a": torch.tensor([9.0, 2.0, 3.0, -5.0, 0.0]), "k": torch.tensor([2, 1, 1, 0, 1])})
    scores = with_baselines(imputation_scores(truth, held, guess), truth, held)
    assert scores["a"]["worse_than"] == ["mean"]
    assert scores["k"]["pfc"] == scores["k"]["baselines"]["mode"]["pfc"] == 1.0 and scores["k"]["worse_than"] == []  # a tie
    lines, warning = score_lines(scores)
    assert lines[0].split() == ["modality", "entries", "metric", "model", "mean", "mode"]
    row = dict(zip(lines[0].split(), next(line for line in lines if line.startswith("a ")).split()))
    assert row["model"].endswith("!") and float(row["mean"]) == pytest.approx(scores["a"]["baselines"]["mean"]["nrmse"],
                                                                              rel=1e-3)
    assert warning.startswith("warning:") and "\n" not in warning and "a (nrmse" in warning and "k (" not in warning


def test_column_scores_count_the_cells_of_every_column():
    truth, held = table()
    guess = filled(truth, {"g": torch.tensor([[0.0, 1.0], [1.0, 2.0], [2.0, 4.0], [3.0, 8.0], [4.0, 0.0]])})
    records = column_scores(Evaluation(truth, held, guess, {}), {"g": ["left", "right"]})
    by = {r["column"]: r for r in records}
    assert list(by) == ["a", "left", "right", "k"]
    assert by["left"]["entries"] == 2 and by["right"]["entries"] == 1  # g[4, 1] was never observed: not scored
    assert by["left"]["model"] == 0.0 and by["right"]["model"] == 0.0
    # left: the mean of the kept 1, 2, 4 is 7/3, against 0 and 3
    left = math.sqrt(((7 / 3) ** 2 + (3 - 7 / 3) ** 2) / 2) / np.std([0, 1, 2, 3, 4])
    assert by["left"]["baselines"]["mean"] == pytest.approx(left)
    assert by["right"]["baselines"]["mean"] == pytest.approx(abs(4 - 11 / 3) / np.std([1.0, 2.0, 4.0, 8.0]))
    assert by["k"]["metric"] == "pfc" and by["k"]["baselines"] == {"mode": 1.0} and by["k"]["worse_than"] == []


SEQUENCE = pm.Schema([pm.Modality("x", (), sequential=True)])


def test_sequence_baselines_interpolate_and_carry_forward_within_each_sequence():
    values = np.array([[0, 1, 2, 3, 4, NAN, NAN], [5, 6, 8, 9, NAN, NAN, NAN]])  # padding after each end
    truth = pm.Batch.from_data(SEQUENCE, {"x": values})
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[0, [1, 2, 4]] = False
    keep[1, 1] = False
    held = truth.with_observed({"x": truth.observed["x"] & keep})
    fills = baseline_fills(held)["x"]
    assert fills["interpolation"][0, :5].tolist() == [0, 1, 2, 3, 3] and fills["interpolation"][1, :4].tolist() == [5, 6.5, 8, 9]
    assert fills["locf"][0, :5].tolist() == [0, 0, 0, 3, 3] and fills["locf"][1, :4].tolist() == [5, 5, 8, 9]
    scores = with_baselines(imputation_scores(truth, held, filled(truth, {"x": truth.values["x"]})), truth, held)["x"]
    spread = np.std([0, 1, 2, 3, 4, 5, 6, 8, 9])
    assert scores["entries"] == 4  # the padding is never scored
    assert scores["baselines"]["interpolation"]["nrmse"] == pytest.approx(math.sqrt((1 + 0.25) / 4) / spread)
    assert scores["baselines"]["locf"]["nrmse"] == pytest.approx(math.sqrt((1 + 4 + 1 + 1) / 4) / spread)
    assert scores["nrmse"] == 0.0 and scores["worse_than"] == []


def test_interpolation_and_locf_by_hand():
    x = np.array([[NAN, 2.0, NAN, NAN, 8.0, NAN]])[..., None]
    seen, zero = ~np.isnan(x), np.nan_to_num(x)
    assert interpolate(zero, seen, np.array([7.0]))[0, :, 0].tolist() == [2, 2, 4, 6, 8, 8]
    assert interpolate(zero, seen, np.array([7.0]), categorical=True)[0, :, 0].tolist() == [2, 2, 2, 8, 8, 8]
    assert locf(zero, seen, np.array([7.0]))[0, :, 0].tolist() == [2, 2, 2, 2, 8, 8]
    never = np.zeros((1, 3, 1), dtype=bool)
    assert locf(zero[:, :3], never, np.array([7.0]))[0, :, 0].tolist() == [7, 7, 7]
    assert interpolate(zero[:, :3], never, np.array([7.0]))[0, :, 0].tolist() == [7, 7, 7]


def test_evaluate_scores_a_model_beside_the_baselines():
    truth, _ = table()
    torch.manual_seed(0)
    model = pm.MIWAE(TABLE, latent_dim=2, hidden=(8,))
    result = evaluate(model, truth, rate=0.5, seed=1, samples=5)
    for name, score in result.scores.items():
        assert set(score["baselines"]) == ({"mode"} if name == "k" else {"mean"})
        assert set(score["worse_than"]) <= set(score["baselines"])


def test_impute_fit_scores_the_cells_the_imputer_held_out():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)) @ np.array([[1.0, 1.0, 1.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.3]])
    frame = pd.DataFrame(x, columns=["u", "v", "w"]).mask(rng.random((300, 3)) < 0.2)
    imputer = pm.Imputer(model="gaussian").fit(frame)
    truth, hidden, fills = held_out_cells(imputer, frame)
    # the Gaussian mixture fills a row from its other cells alone: refilling these rows with the
    # held-out cells blanked gives the imputer's own held-out scores only if they are the same cells
    refilled = imputer.tables_.transform(imputer.transform(imputer.tables_.inverse_transform(hidden, nan=True)))
    again = imputation_scores(truth, hidden, refilled)
    for column in ("u", "v", "w"):
        assert again[column]["nrmse"] == pytest.approx(imputer.validation_scores_[column], rel=1e-4)
        assert fills[column]["mean"].shape == (len(truth),)
    lines, warning = imputer_lines(imputer, frame)
    assert "held-out score" in lines[0] and lines[1].split()[:5] == ["column", "held-out", "cells", "metric", "imputer"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert set(rows) == {"u", "v", "w"} and all(r[-1] == "gaussian" and r[-2] == "1.0" for r in rows.values())
    assert all(int(r[1]) == again[c]["entries"] for c, r in rows.items())
    assert all(float(r[3].rstrip("!")) < float(r[4]) for r in rows.values()) and warning is None
