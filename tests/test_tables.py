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


def survey():
    """Like R's MASS::survey: the exercise level "None" is data, a numeric column has holes."""
    return pd.DataFrame({
        "Exer": ["None", "Some", "Freq", "None", "Some", None],
        "Pulse": [70.0, np.nan, 80.0, 64.0, np.nan, 72.0],
        "Smoke": ["Never", "Heavy", "NA", "Never", "Occas", "Never"],
    })


def test_text_that_looks_missing_is_data_unless_named():
    table = survey()
    with pytest.warns(UserWarning) as caught:
        tables = pm.TableSchema().fit(table)
    assert [str(w.message).split(" are kept")[0] for w in caught] == [
        "column 'Exer': the categories ['None']", "column 'Smoke': the categories ['NA']"]
    assert str(caught[0].message).endswith("(on the command line: --na-values None)")
    assert tables.categories_["Exer"] == ["Freq", "None", "Some"]
    assert tables.transform(table).observed["Exer"].tolist() == [True] * 5 + [False]
    with pytest.warns(UserWarning, match=r"column 'Exer'"):
        named = pm.TableSchema(na_values=["NA"]).fit(table)
    assert named.categories_["Smoke"] == ["Heavy", "Never", "Occas"]
    batch = named.transform(table)
    assert batch.observed["Smoke"].tolist() == [True, True, False, True, True, True]
    filled = named.fill(table, named.transform(table.fillna({"Pulse": 70.0})).with_observed(
        {k: torch.ones_like(v) for k, v in batch.observed.items()}))
    assert filled["Smoke"][2] in {"Heavy", "Never", "Occas"} and filled["Exer"][:5].tolist() == table["Exer"][:5].tolist()
    assert (filled["Exer"] == "None").sum() == 2  # the level None is never overwritten


def test_markers_of_any_type_and_their_config():
    import json

    from polymodal.tables import transform_from_config

    table = pd.DataFrame({"a": [1.5, -999.0, 3.0, 4.0], "b": ["x", "?", "y", "x"]})
    tables = pm.TableSchema(na_values=["?", -999]).fit(table)
    assert tables.min_["a"] == 1.5 and tables.categories_["b"] == ["x", "y"]
    back = transform_from_config(json.loads(json.dumps(tables.config())))
    assert back.na_values == ["?", -999] and back.transform(table).observed["a"].tolist() == [True, False, True, True]


def test_integer_columns_come_back_whole_in_their_dtype():
    table = pd.DataFrame({
        "Month": [5.0, 6.0, np.nan, 9.0],  # an integer column with a hole, as pandas reads it
        "count": pd.array([1, None, 3, 4], dtype="Int64"),
        "Wind": [7.4, np.nan, 12.6, 8.0],
    })
    tables = pm.TableSchema().fit(table)
    assert tables.integers_ == ["Month", "count"]
    batch = tables.transform(table)
    guess = {"Month": 0.55, "count": 0.4, "Wind": 0.5}  # scaled: Month 6.65, count 2.2, Wind 10.0
    values = {k: torch.where(batch.observed[k], batch.values[k], torch.tensor(v)) for k, v in guess.items()}
    filled = tables.fill(table, pm.Batch(batch.schema, values, {k: torch.ones_like(v) for k, v in batch.observed.items()}))
    assert filled["Month"].tolist() == [5.0, 6.0, 7.0, 9.0] and filled["count"].tolist() == [1, 2, 3, 4]
    assert filled["Wind"][1] == pytest.approx(10.0) and (filled.dtypes == table.dtypes).all()


def test_a_one_class_column_is_filled_with_its_class():
    table = pd.DataFrame({"only": ["yes", None, "yes", None], "x": [1.0, 2.0, np.nan, 4.0]})
    tables = pm.TableSchema().fit(table)
    assert tables.categories_["only"] == ["yes"] and tables.schema_["only"].num_classes == 2
    batch = tables.transform(table)
    phantom = batch.values["only"].masked_fill(~batch.observed["only"], 1)  # the class no cell has
    values = {**batch.values, "only": phantom}
    filled = tables.fill(table, pm.Batch(batch.schema, values, {k: torch.ones_like(v) for k, v in batch.observed.items()}))
    assert filled["only"].tolist() == ["yes"] * 4


@pytest.mark.parametrize("cells", [["1973-05-01", "1973-05-02", None], ["2024-01-31 12:00", "2024-02-01T08:30:15", None]])
def test_text_dates_are_refused_unless_named_categorical(cells):
    table = pd.DataFrame({"Date": cells, "x": [1.0, 2.0, 3.0]})
    with pytest.raises(pm.DataError, match=r"column 'Date' holds dates such as .*days since the first date"):
        pm.TableSchema().fit(table)
    assert pm.TableSchema(categorical=["Date"]).fit(table).categories_["Date"] == cells[:2]
    not_a_date = table.assign(Date=["1973-05-01", "1973-13-45", None])  # shaped like a date, no such day
    assert pm.TableSchema().fit(not_a_date).schema_["Date"].categorical


@pytest.mark.parametrize("model", ["auto", "mvae"])
def test_the_imputer_fills_a_one_class_column_and_keeps_integers_whole_when_asked(model):
    rng = np.random.default_rng(0)
    n = 40
    table = pd.DataFrame({"x": rng.normal(size=n), "Month": rng.integers(5, 10, n).astype(float),
                          "only": pd.Series(["yes"] * n, dtype="str")})
    table = table.mask(rng.random(table.shape) < 0.25)
    for whole in (True, False):
        imputer = pm.Imputer(model=model, steps=3, samples=10, validation=0.0, round_integers=whole).fit(table)
        for filled in [imputer.transform(table), *imputer.sample(table, 3)]:
            assert (filled["only"] == "yes").all() and (filled.dtypes == table.dtypes).all()
            assert ((filled["Month"] % 1 == 0).all() == whole) and filled["Month"].notna().all()
            assert filled["x"].notna().all()


def test_integer_columns_keep_the_estimate_without_rounding_and_the_choice_is_saved():
    import json

    from polymodal.tables import transform_from_config

    table = pd.DataFrame({"Month": [5.0, 6.0, np.nan, 9.0], "count": pd.array([1, None, 3, 4], dtype="Int64"),
                          "whole": pd.array([1, 2, 3, 4], dtype="Int64")})
    tables = pm.TableSchema(round_integers=False).fit(table)
    batch = tables.transform(table)
    guess = {"Month": 0.55, "count": 0.4, "whole": 0.0}  # scaled: Month 7.2, count 2.2
    values = {k: torch.where(batch.observed[k], batch.values[k], torch.tensor(v)) for k, v in guess.items()}
    filled = tables.fill(table, pm.Batch(batch.schema, values, {k: torch.ones_like(v) for k, v in batch.observed.items()}))
    assert filled["Month"].tolist() == pytest.approx([5.0, 6.0, 7.2, 9.0])
    assert filled["count"].dtype == "Float64" and filled["count"].tolist() == pytest.approx([1.0, 2.2, 3.0, 4.0])
    assert filled["whole"].dtype == "Int64"  # nothing to fill: the column is kept as it was
    assert not transform_from_config(json.loads(json.dumps(tables.config()))).round_integers
    assert pm.TableSchema.from_config({k: v for k, v in tables.config().items() if k != "round_integers"}).round_integers


def test_a_round_integers_other_than_true_or_false_is_a_data_error_naming_it():
    with pytest.raises(pm.DataError, match="round_integers must be True or False, got 'no'"):
        pm.TableSchema(round_integers="no").fit(pd.DataFrame({"x": [1.0, 2.0]}))
