import json

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.data import Batch, DataError, concat
from polymodal.likelihoods import Gaussian
from polymodal.modalities import Modality, Schema

SCHEMA = Schema(
    [
        Modality("x", (3,)),
        Modality("y", likelihood="categorical", num_classes=4),
        Modality("img", (2, 2), likelihood="bernoulli"),
    ]
)
SEQ = Schema([Modality("s", (2,), sequential=True), Modality("t", (), sequential=True, likelihood="laplace")])

X = np.array([[0.1, np.nan, 0.3], [1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]])
Y = np.array([3.0, np.nan, 0.0])
IMG = np.arange(12, dtype=float).reshape(3, 2, 2) / 12


def make_batch():
    return Batch.from_data(SCHEMA, {"x": X, "y": Y, "img": IMG})


def test_from_numpy_nan_becomes_unobserved_zero():
    batch = make_batch()
    assert len(batch) == 3
    assert batch.values["x"].dtype == torch.float32 and batch.values["y"].dtype == torch.long
    assert batch.observed["x"].dtype == torch.bool
    np.testing.assert_array_equal(batch.observed["x"].numpy(), ~np.isnan(X))
    np.testing.assert_array_equal(batch.values["x"].numpy(), np.nan_to_num(X).astype(np.float32))
    assert batch.values["y"].tolist() == [3, 0, 0] and batch.observed["y"].tolist() == [True, False, True]
    assert all(torch.isfinite(v.float()).all() for v in batch.values.values())


def assert_batches_equal(a, b):
    assert a.schema == b.schema and set(a.values) == set(b.values)
    for name in a.values:
        assert torch.equal(a.values[name], b.values[name]), name
        assert torch.equal(a.observed[name], b.observed[name]), name


def test_from_tensors_and_pandas_equal_numpy():
    expected = make_batch()
    from_torch = Batch.from_data(SCHEMA, {"x": torch.tensor(X), "y": torch.tensor(Y), "img": torch.tensor(IMG)})
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).astype(object)
    frame.iloc[0, 1] = None
    from_pandas = Batch.from_data(SCHEMA, {"x": frame, "y": pd.Series(Y), "img": IMG})
    assert_batches_equal(from_torch, expected)
    assert_batches_equal(from_pandas, expected)


def test_explicit_observed_mask_combines_with_nan():
    given = np.array([[False, True, True], [True, False, True], [True, True, True]])
    batch = Batch.from_data(SCHEMA, {"x": X, "y": Y, "img": IMG}, observed={"x": given, "img": torch.zeros(3, 2, 2)})
    np.testing.assert_array_equal(batch.observed["x"].numpy(), given & ~np.isnan(X))
    assert batch.values["x"][0, 0] == 0 and batch.values["x"][1, 1] == 0
    assert not batch.observed["img"].any() and (batch.values["img"] == 0).all()
    with pytest.raises(DataError, match="'x'.*observed mask has shape"):
        Batch.from_data(SCHEMA, {"x": X}, observed={"x": np.ones((3, 2), dtype=bool)})


def test_presence_static_and_sequential():
    batch = make_batch()
    assert batch.present("x").tolist() == [True, True, False]
    assert batch.present("y").tolist() == [True, False, True]
    assert batch.presence().shape == (3, 3)
    s = np.zeros((2, 4, 2))
    s[0, 1] = np.nan
    s[1, 2, 0] = np.nan
    seq = Batch.from_data(SEQ, {"s": s, "t": np.zeros((2, 4))})
    assert seq.present("s").tolist() == [[True, False, True, True], [True, True, True, True]]
    assert seq.present("t").shape == (2, 4)


def test_left_out_modality_is_missing_everywhere():
    batch = Batch.from_data(SCHEMA, {"x": X})
    assert batch.values["img"].shape == (3, 2, 2) and not batch.observed["img"].any()
    assert batch.values["y"].dtype == torch.long and not batch.present("y").any()
    seq = Batch.from_data(SEQ, {"s": np.zeros((2, 5, 2))})
    assert seq.values["t"].shape == (2, 5) and not seq.observed["t"].any()


@pytest.mark.parametrize(
    "data, match",
    [
        ({"x": X, "z": X}, r"unknown modalities \['z'\].*\['x', 'y', 'img'\]"),
        ({"x": np.zeros((3, 4))}, r"'x'.*expected shape \(B, 3\), got \(3, 4\)"),
        ({"x": np.zeros(3)}, r"'x'.*expected shape \(B, 3\), got \(3,\)"),
        ({"y": np.zeros((3, 1))}, r"'y'.*expected shape \(B\), got \(3, 1\)"),
        ({"img": np.zeros((3, 4))}, r"'img'.*expected shape \(B, 2, 2\)"),
        ({"x": X, "y": Y[:2]}, r"different numbers of samples.*'x': 3.*'y': 2"),
        ({"y": np.array([0.0, 4.0, 1.0])}, r"'y'.*categories must be integers in \[0, 3\].*4\.0"),
        ({"y": np.array([0.0, -1.0, 1.0])}, r"'y'.*categories.*-1\.0"),
        ({"y": np.array([0.0, 1.5, 1.0])}, r"'y'.*categories must be integers.*1\.5"),
        ({"x": np.array([[0.0, np.inf, 0.0]])}, r"'x'.*infinite"),
        ({"img": -np.full((1, 2, 2), np.inf)}, r"'img'.*infinite"),
        ({"x": np.zeros((0, 3))}, "empty"),
        ({}, "no data"),
        ({"x": [["a", "b", "c"]]}, r"'x'.*expected numbers"),
    ],
)
def test_validation_errors(data, match):
    with pytest.raises(DataError, match=match):
        Batch.from_data(SCHEMA, data)


def test_sequential_validation_errors():
    with pytest.raises(DataError, match=r"'t'.*3 time steps.*4"):
        Batch.from_data(SEQ, {"s": np.zeros((2, 4, 2)), "t": np.zeros((2, 3))})
    with pytest.raises(DataError, match=r"'s'.*expected shape \(B, T, 2\)"):
        Batch.from_data(SEQ, {"s": np.zeros((2, 2))})
    with pytest.raises(DataError, match="unknown modalities"):
        Batch.from_data(SEQ, {"s": np.zeros((2, 4, 2))}, observed={"u": np.ones(2)})


def test_category_out_of_range_is_fine_when_missing():
    batch = Batch.from_data(SCHEMA, {"y": np.array([0.0, 9.0])}, observed={"y": np.array([True, False])})
    assert batch.values["y"].tolist() == [0, 0]


def test_to_keeps_masks():
    batch = make_batch()
    meta = batch.to("meta")
    assert meta.device.type == "meta"
    for name in SCHEMA.names:
        assert meta.observed[name].device.type == "meta" and meta.observed[name].dtype == torch.bool
        assert meta.observed[name].shape == batch.observed[name].shape
    assert_batches_equal(batch.to("cpu"), batch)


def test_select_without_with_observed():
    batch = make_batch()
    picked = batch.select(torch.tensor([2, 0]))
    assert len(picked) == 2
    assert torch.equal(picked.values["x"], batch.values["x"][[2, 0]])
    assert torch.equal(picked.observed["y"], batch.observed["y"][[2, 0]])
    assert len(batch.select(slice(1, 3))) == 2

    dropped = batch.without("img")
    assert not dropped.observed["img"].any() and (dropped.values["img"] == 0).all()
    assert torch.equal(dropped.values["x"], batch.values["x"]) and torch.equal(dropped.observed["x"], batch.observed["x"])
    assert batch.observed["img"].all()  # the original is unchanged

    half = batch.with_observed({"img": torch.tensor([True, False, True]).view(3, 1, 1)})
    assert half.observed["img"].shape == (3, 2, 2) and half.observed["img"].tolist()[1] == [[False, False], [False, False]]
    assert (half.values["img"][1] == 0).all() and torch.equal(half.values["img"][2], batch.values["img"][2])
    with pytest.raises(DataError, match="unknown modality 'q'"):
        batch.with_observed({"q": torch.ones(3)})


def test_concat_inverts_select():
    batch = make_batch()
    assert_batches_equal(concat([batch.select(slice(0, 1)), batch.select(slice(1, 3))]), batch)


def test_numpy_round_trip_with_nan():
    batch = make_batch()
    arrays = batch.numpy()
    np.testing.assert_array_equal(np.isnan(arrays["x"]), np.isnan(X))
    np.testing.assert_allclose(arrays["x"][~np.isnan(X)], X[~np.isnan(X)], rtol=1e-6)
    np.testing.assert_array_equal(arrays["y"], Y)
    assert not np.isnan(batch.numpy(nan=False)["x"]).any()
    assert_batches_equal(Batch.from_data(SCHEMA, arrays), batch)


# modalities and schema ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Schema([Modality("a"), Modality("b"), Modality("a")]), r"unique.*\['a'\]"),
        (lambda: Schema([]), "at least one"),
        (lambda: Modality("c", likelihood="categorical"), "'c'.*num_classes"),
        (lambda: Modality("c", likelihood={"name": "categorical"}), "'c'.*num_classes"),
        (lambda: Modality("c", likelihood={"name": "categorical", "num_classes": 3}, num_classes=4), "'c'.*disagrees"),
        (lambda: Modality("v", (5,), net="conv"), r"'v'.*image shape.*\(5,\)"),
        (lambda: Modality("v", (5,), net="rnn"), "'v'.*net must be"),
        (lambda: Modality("v", (3, 0)), "'v'.*positive"),
        (lambda: Modality(""), "non-empty name"),
    ],
)
def test_modality_and_schema_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_modality_normalises_its_spec():
    m = Modality("v", 5, likelihood={"name": "gaussian", "scale": 0.1})
    assert m.shape == (5,) and m.size == 5 and m.likelihood == Gaussian(0.1)
    label = Modality("l", likelihood="categorical", num_classes=3)
    assert label.categorical and label.likelihood.n_params == 3 and label.size == 1
    assert SCHEMA.names == ["x", "y", "img"] and SCHEMA.names.index("img") == 2 and "y" in SCHEMA and "q" not in SCHEMA
    with pytest.raises(KeyError, match="unknown modality 'q'"):
        SCHEMA["q"]


def test_schema_config_round_trip():
    schema = Schema(
        [
            *SCHEMA,
            Modality("im", (1, 7, 9), likelihood={"name": "gaussian", "learn_scale": True}, net="conv"),
            Modality("seq", (2,), likelihood={"name": "laplace", "scale": 0.5}, sequential=True),
        ]
    )
    config = json.loads(json.dumps(schema.config()))
    restored = Schema.from_config(config)
    assert restored == schema
    assert restored["im"].likelihood.learn_scale and restored["seq"].sequential and restored["y"].num_classes == 4
    assert restored != SCHEMA


def test_observed_mask_without_values_is_refused():
    schema = Schema([Modality("a", (2,)), Modality("b", ())])
    with pytest.raises(DataError, match=r"observed masks given for modalities \['b'\]"):
        Batch.from_data(schema, {"a": np.zeros((3, 2))}, observed={"b": np.ones(3, dtype=bool)})


def test_fitting_a_model_loads_no_heavy_library():
    """A model, its trainer and a batch of arrays need neither pandas, scikit-learn, scipy nor
    matplotlib: ``import polymodal`` pays for them only where they are used. Nor does the
    optimizer import TorchDynamo (about a second), with either Adam or AdamW and an LR schedule."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, polymodal as pm\n"
        "schema = pm.Schema([pm.Modality('a', (2,)), pm.Modality('b', (1,))])\n"
        "batch = pm.Batch.from_data(schema, {'a': np.ones((4, 2)), 'b': np.array([[1.0], [np.nan], [0.0], [2.0]])})\n"
        "pm.Trainer(pm.MVAE(schema, hidden=(4,)), epochs=1, progress=False).fit(batch)\n"
        "pm.Trainer(pm.MVAE(schema, hidden=(4,)), epochs=2, optimizer='adamw', lr_schedule='cosine', progress=False).fit(batch)\n"
        "heavy = ('pandas', 'sklearn', 'scipy', 'matplotlib', 'torch._dynamo')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
