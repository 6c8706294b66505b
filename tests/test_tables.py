import numpy as np
import pandas as pd
import pytest
import torch

import polymodal as pm
from polymodal.metrics import nrmse, pfc, rmse


def frame():
    return pd.DataFrame({
        "a": [1.0, 2.0, np.nan, 4.0, 5.0],
        "b": [10.0, np.nan, 30.0, 40.0, 10.0],
        "colour": pd.Series(["red", "blue", None, "red", "green"], dtype="category"),
        "c": [0.5, 0.5, 0.5, np.nan, 0.5],
    })


def test_schema_from_a_table_and_scaling_round_trip():
    table = frame()
    tables = pm.TableSchema().fit(table)
    schema = tables.schema_
    assert schema.names == ["a", "b", "colour", "c"]
    assert schema["colour"].categorical and schema["colour"].num_classes == 3 and not schema["a"].categorical
    batch = tables.transform(table)
    assert batch.values["a"][batch.observed["a"]].min() == 0 and batch.values["a"][batch.observed["a"]].max() == 1
    assert batch.observed["colour"].tolist() == [True, True, False, True, True]
    back = tables.inverse_transform(batch, nan=True)
    pd.testing.assert_frame_equal(back[["a", "b", "c"]], table[["a", "b", "c"]])
    assert back["colour"].tolist()[:2] == ["red", "blue"] and back["colour"].isna().tolist()[2]


def test_groups_and_explicit_categorical_columns():
    table = pd.DataFrame({"x1": [0.0, 1.0, 2.0], "x2": [1.0, np.nan, 3.0], "grade": [1, 2, 1]})
    tables = pm.TableSchema(categorical=["grade"], groups={"xy": ["x1", "x2"]}).fit(table)
    assert tables.schema_.names == ["xy", "grade"] and tables.schema_["xy"].shape == (2,)
    batch = tables.transform(table)
    assert batch.observed["xy"].tolist() == [[True, True], [True, False], [True, True]]
    assert batch.values["grade"].tolist() == [0, 1, 0]
    pd.testing.assert_frame_equal(tables.inverse_transform(batch, nan=True), table, check_dtype=False)


def test_degenerate_tables():
    table = frame()
    table["empty"] = np.nan
    with pytest.raises(pm.DataError, match=r"columns \['empty'\] have no observed value"):
        pm.TableSchema().fit(table)
    with pytest.raises(pm.DataError, match="not seen in training"):
        pm.TableSchema().fit(frame()).transform(frame().assign(colour=["red", "pink", "red", "red", "red"]))
    with pytest.raises(pm.DataError, match="lacks columns"):
        pm.TableSchema().fit(frame()).transform(frame().drop(columns="b"))
    with pytest.raises(pm.DataError, match="categorical columns"):
        pm.TableSchema(categorical=["nope"]).fit(frame())
    # a row with every cell missing is allowed: models fill it from what they learned
    holes = frame()
    holes.iloc[1] = np.nan
    batch = pm.TableSchema().fit(holes).transform(holes)
    assert not batch.presence()[:, 1].any()


def test_metrics_over_removed_entries():
    truth = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    imputed = truth + np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    removed = np.array([[True, False], [False, False], [False, True]])
    std = truth.std(0)
    assert nrmse(imputed, truth, removed) == pytest.approx((1 / std[0] + 2 / std[1]) / 2)
    assert rmse(imputed, truth, removed) == pytest.approx(np.sqrt((1 + 4) / 2))
    labels = np.array([[0, 1], [1, 1], [2, 0]])
    guess = np.array([[1, 1], [1, 0], [2, 0]])
    assert pfc(guess, labels, np.array([[True, True], [False, True], [True, False]])) == pytest.approx((0.5 + 0.5) / 2)


def test_a_fitted_schema_survives_json():
    import json

    from polymodal.tables import transform_from_config

    table = frame()
    tables = pm.TableSchema(groups={"ab": ["a", "b"]}).fit(table)
    back = transform_from_config(json.loads(json.dumps(tables.config())))
    assert back.schema_ == tables.schema_ and back.columns_ == tables.columns_ and back.categories_ == tables.categories_
    a, b = tables.transform(table), back.transform(table)
    assert all(torch.equal(a.values[k], b.values[k]) and torch.equal(a.observed[k], b.observed[k]) for k in a.values)


def test_sequences_in_long_format():
    long = pd.DataFrame({"id": ["p", "p", "p", "q", "q"], "time": [3, 4, 6, 3, 4], "x": [1.0, np.nan, 3.0, 4.0, 5.0],
                         "kind": ["a", "b", "a", None, "b"]})
    sequences = pm.SequenceSchema().fit(long)
    assert [m.sequential for m in sequences.schema_] == [True, True] and sequences.schema_["kind"].num_classes == 2
    batch = sequences.transform(long)
    # integer times: the grid is 3..6, so p's step 5 is missing and q is padded after step 4
    assert batch.observed["x"].tolist() == [[True, False, False, True], [True, True, False, False]]
    filled = sequences.fill(long, batch)
    assert filled[["id", "time"]].values.tolist() == [["p", 3], ["p", 4], ["p", 5], ["p", 6], ["q", 3], ["q", 4]]
    assert filled.loc[[0, 3], "x"].tolist() == [1.0, 3.0] and not filled.isna().any().any()
    with pytest.raises(pm.DataError, match="more than one row"):
        sequences.transform(pd.concat([long, long.iloc[:1]]))


def test_a_category_dtype_declares_levels_the_training_rows_miss():
    kind = pd.CategoricalDtype(["a", "b", "c"])
    train = pd.DataFrame({"k": pd.Series(["a", "b", None, "a"], dtype=kind), "x": [1.0, 2.0, 3.0, 4.0]})
    tables = pm.TableSchema().fit(train)
    assert tables.categories_["k"] == ["a", "b", "c"] and tables.schema_["k"].num_classes == 3
    test = pd.DataFrame({"k": pd.Series(["c", None], dtype=kind), "x": [1.0, np.nan]})
    assert tables.transform(test).values["k"].tolist() == [2, 0]
