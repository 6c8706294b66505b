"""Bad input never passes silently: each public boundary refuses it with a clear error.

Each parametrised case names what the message must say (the modality, column, file,
option or expected value). Where a run folder or a model folder is involved, the case also
checks that nothing on disk changed.
"""

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import polymodal as pm
from polymodal.files import atomic_write

SCHEMA = pm.Schema([
    pm.Modality("x", (3,), "gaussian"),
    pm.Modality("b", (2,), "bernoulli"),
    pm.Modality("y", (), "categorical", num_classes=3),
])


def good_data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 3)), "b": rng.random((n, 2)).round(), "y": rng.integers(0, 3, n).astype(float)}


def batch(n=6, seed=0):
    return pm.Batch.from_data(SCHEMA, good_data(n, seed))


def model():
    torch.manual_seed(0)
    return pm.MVAE(SCHEMA, latent_dim=2, hidden=(8,))


def folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


# --- Batch.from_data ---------------------------------------------------------------------

def _with(**changes):
    data = good_data()
    data.update(changes)
    return data


BATCHES = [
    ("string cell in a DataFrame", _with(x=pd.DataFrame([[1.0, "a", 2.0]] * 6)), pm.DataError, r"'x'.*'a'.*row 0, column 1"),
    ("numeric text in a DataFrame", _with(x=pd.DataFrame([[1.0, "1.5", 2.0]] * 6)), pm.DataError, r"'x'.*'1\.5'"),
    ("text array", _with(x=np.full((6, 3), "red")), pm.DataError, r"'x'.*text"),
    ("dates", _with(x=np.full((6, 3), np.datetime64("2024-01-01"))), pm.DataError, r"'x'.*dates"),
    ("complex array", _with(x=np.ones((6, 3)) * 1j), pm.DataError, r"'x'.*complex"),
    ("complex tensor", _with(x=torch.ones(6, 3, dtype=torch.complex64)), pm.DataError, r"'x'.*complex"),
    ("ragged list", _with(x=[[1.0, 2.0, 3.0], [1.0]] * 3), pm.DataError, r"'x'.*rectangular"),
    ("beyond float32", _with(x=np.full((6, 3), 1e39)), pm.DataError, r"'x'.*float32"),
    ("below float32", _with(x=np.full((6, 3), -1e39)), pm.DataError, r"'x'.*float32"),
    ("raw grey levels for a Bernoulli", _with(b=np.full((6, 2), 16.0)), pm.DataError, r"'b'.*Bernoulli.*\[0, 1\].*16"),
    ("negative Bernoulli", _with(b=np.full((6, 2), -0.5)), pm.DataError, r"'b'.*\[0, 1\]"),
    ("infinite Bernoulli", _with(b=np.full((6, 2), np.inf)), pm.DataError, r"'b'.*infinite"),
    ("class out of range", _with(y=np.full(6, 3.0)), pm.DataError, r"'y'.*integers in \[0, 2\]"),
    ("object cell in an array", _with(y=np.array([0, 1, {"a": 1}, 0, 1, 2], dtype=object)), pm.DataError, r"'y'.*dict"),
    ("not a mapping", np.zeros((6, 3)), pm.DataError, r"map modality names \['x', 'b', 'y'\]"),
]


@pytest.mark.parametrize("data, error, message", [c[1:] for c in BATCHES], ids=[c[0] for c in BATCHES])
def test_batches_refuse_bad_values(data, error, message):
    with pytest.raises(error, match=message):
        pm.Batch.from_data(SCHEMA, data)


MASKS = [
    ("text mask", np.full((6, 3), "False"), r"'x'.*observed mask must hold booleans.*'False'"),
    ("NaN in a mask", np.full((6, 3), np.nan), r"'x'.*observed mask must hold booleans.*nan"),
    ("a 2 in a mask", np.full((6, 3), 2), r"'x'.*observed mask must hold booleans.*2"),
]


@pytest.mark.parametrize("mask, message", [c[1:] for c in MASKS], ids=[c[0] for c in MASKS])
def test_batches_refuse_masks_that_are_not_boolean(mask, message):
    with pytest.raises(pm.DataError, match=message):
        pm.Batch.from_data(SCHEMA, good_data(), observed={"x": mask})


def test_a_schema_must_be_a_schema():
    with pytest.raises(TypeError, match="schema must be a Schema"):
        pm.Batch.from_data(["x"], good_data())


# --- TableSchema ---------------------------------------------------------------------------

def table():
    return pd.DataFrame({
        "a": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
        "colour": pd.Series(["red", "blue", None, "red", "green", "blue"], dtype="str"),
        "n": pd.array([1, 2, None, 4, 2, 1], dtype="Int64"),
    })


TABLES = [
    ("'?' in a numeric object column", "fit", lambda t: t.assign(a=pd.Series([1.0, "?", 2.0, 3.0, 4.0, 5.0], dtype=object)),
     r"column 'a' holds numbers, but 1 of its 6 observed cells are text \['\?'\] \(rows \[1\]\).*na_values=\['\?'\]"),
    ("a stray number among text categories", "fit",
     lambda t: t.assign(colour=pd.Series(["red", "blue", None, "red", "3", "blue"], dtype=object)),
     r"^(?!.*na_values)column 'colour' holds text categories such as \['blue', 'red'\], but 1 of its 5 observed cells are "
     r"numbers \['3'\] \(rows \[4\]\): correct or empty those cells"),
    ("no columns", "fit", lambda t: t[[]], r"the table has no columns to model"),
    ("'?' in a pandas 3 str column", "fit", lambda t: t.assign(a=pd.Series(["1.5", "?", "2", "3", "4", "5"], dtype="str")),
     r"column 'a'.*\['\?'\]"),
    ("'?' in a string column", "fit", lambda t: t.assign(a=pd.Series(["1.5", "?", "2", "3", "4", "5"], dtype="string")),
     r"column 'a'.*\['\?'\]"),
    ("inf in fit", "fit", lambda t: t.assign(a=[1.0, np.inf, 2.0, 3.0, 4.0, 5.0]), r"column 'a'.*infinite.*rows \[1\]"),
    ("-inf in transform", "transform", lambda t: t.assign(a=[1.0, 2.0, -np.inf, 3.0, 4.0, 5.0]), r"column 'a'.*infinite"),
    ("datetime column", "fit", lambda t: t.assign(when=pd.date_range("2024-01-01", periods=6)), r"column 'when'.*dates"),
    ("timedelta column", "fit", lambda t: t.assign(span=pd.to_timedelta(np.arange(6), "D")), r"column 'span'.*dates"),
    ("timestamps in an object column", "fit",
     lambda t: t.assign(when=pd.Series(list(pd.date_range("2024-01-01", periods=6)), dtype=object)), r"column 'when'.*dates"),
    ("dict cells", "fit", lambda t: t.assign(c=[{"k": 1}] * 6), r"column 'c'.*dict"),
    ("text in a numeric column at transform", "transform", lambda t: t.assign(a=["x", 1.0, 2.0, 3.0, 4.0, 5.0]),
     r"column 'a' is numeric.*\['x'\]"),
    ("unseen category", "transform", lambda t: t.assign(colour=pd.Series(["pink"] * 6, dtype="str")),
     r"column 'colour'.*\['pink'\].*not seen"),
    ("three-dimensional array", "fit", lambda t: np.zeros((2, 2, 2)), r"shape \(rows, columns\)"),
    ("a repeated column", "fit", lambda t: pd.concat([t, t[["a"]]], axis=1), r"columns \['a'\] appear more than once"),
]


# Files as read_frame reads them, then TableSchema: (name, file name, content, message).
FILES = [
    ("a repeated CSV column", "x.csv", "a,b,a\n1,2,3\n", r"x\.csv: columns \['a'\] appear more than once"),
    ("two repeated CSV columns", "x.csv", "a,b,a,b,c\n1,2,3,4,5\n", r"x\.csv: columns \['a', 'b'\] appear more"),
    ("repeated NPZ columns", "x.npz", {"data": np.zeros((2, 2)), "columns": np.array(["a", "a"])},
     r"x\.npz: columns \['a'\] appear more than once"),
    ("ISO dates", "x.csv", "Date,x\n1973-05-01,1\n1973-05-02,2\n", r"column 'Date' holds dates such as '1973-05-01'"),
    ("ISO dates with holes", "x.csv", "x,Date\n1,1973-05-01\n2,\n3,1973-05-03\n", r"column 'Date' holds dates"),
    ("date and time", "x.csv", "when,x\n2024-01-31 12:00:00,1\n2024-02-01 00:30:00,2\n", r"column 'when' holds dates"),
    ("ISO T times", "x.csv", "when,x\n2024-01-31T12:00,1\n2024-02-01T00:30,2\n", r"column 'when' holds dates"),
    ("ISO times with a zone", "x.csv", "when,x\n2024-01-31T12:00:00Z,1\n2024-02-01T00:30:00+02:00,2\n",
     r"column 'when' holds dates"),
    ("an empty CSV", "x.csv", "", r"x\.csv: the file is empty"),
    ("NA in a numeric column", "x.csv", "Ozone,x\n41,1\nNA,2\n12,3\n", r"column 'Ozone'.*\['NA'\].*--na-values NA"),
    ("None in a numeric column", "x.csv", "Ozone,x\n41,1\nNone,2\n12,3\n", r"column 'Ozone'.*--na-values None"),
    ("null in a numeric column", "x.csv", "Ozone,x\n4.5,1\nnull,2\n", r"column 'Ozone'.*na_values=\['null'\]"),
    ("a dash in a numeric column", "x.csv", "Ozone,x\n4.5,1\n-,2\n", r"column 'Ozone'.*--na-values -"),
    ("two markers in a numeric column", "x.csv", "Ozone,x\n4.5,1\nNA,2\n?,3\n", r"column 'Ozone'.*--na-values NA,\?"),
]


def write_file(path, content):
    if isinstance(content, dict):
        np.savez(path, **content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name, content, message", [c[1:] for c in FILES], ids=[c[0] for c in FILES])
def test_files_refuse_repeated_names_dates_and_unnamed_markers(tmp_path, name, content, message):
    path = write_file(tmp_path / name, content)
    with pytest.raises(pm.DataError, match=message):
        pm.TableSchema().fit(pm.read_frame(path))


@pytest.mark.parametrize("read", [lambda: pm.TableSchema(na_values="NA").fit(table()),
                                  lambda: pm.read_frame("x.csv", na_values="NA"),
                                  lambda: pm.SequenceSchema(na_values="NA").fit(table().assign(id=0, time=range(6)))],
                         ids=["TableSchema", "read_frame", "SequenceSchema"])
def test_named_markers_must_be_a_list(read):
    with pytest.raises(pm.DataError, match=r"na_values must be a list of markers, got the string 'NA'"):
        read()


@pytest.mark.parametrize("options, message", [
    ({"categorical": "colour"}, r"categorical must be a list of column names, got the string 'colour'"),
    ({"groups": {"ab": "a"}}, r"groups \['ab'\]: each group must be a list"),
], ids=["categorical as a string", "a group as a string"])
def test_table_options_must_be_lists_of_names(options, message):
    with pytest.raises(pm.DataError, match=message):
        pm.TableSchema(**options).fit(table())


@pytest.mark.parametrize("stage, damage, message", [c[1:] for c in TABLES], ids=[c[0] for c in TABLES])
def test_tables_refuse_bad_columns(stage, damage, message):
    with pytest.raises(pm.DataError, match=message):
        if stage == "fit":
            pm.TableSchema().fit(damage(table()))
        else:
            pm.TableSchema().fit(table()).transform(damage(table()))


def test_tables_refuse_use_before_fit_and_batches_of_another_schema():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="TableSchema"):
        pm.TableSchema().transform(table())
    with pytest.raises(pm.DataError, match=r"a batch of this table's schema \['a', 'colour', 'n'\], got \['x', 'b', 'y'\]"):
        pm.TableSchema().fit(table()).inverse_transform(batch())


@pytest.mark.parametrize("text", ["object", "str", "string"])
def test_text_columns_of_any_pandas_dtype_are_categorical_and_round_trip(text):
    frame = pd.DataFrame({
        "colour": pd.Series(["red", "blue", None, "red"], dtype=text),
        "grade": pd.Series(["1", "2", "2", None], dtype=text),  # numeric text alone stays text
        "count": pd.array([1, None, 3, 4], dtype="Int64"),
        "flag": pd.array([True, False, None, True], dtype="boolean"),
        "kind": pd.Series(["a", "b", "a", None], dtype="category"),
        "level": pd.Series([1.0, 2.0, 3.0, 4.0], dtype=object),  # numbers in an object column are numeric
    })
    tables = pm.TableSchema().fit(frame)
    assert [tables.schema_[c].categorical for c in frame] == [True, True, False, True, True, False]
    back = tables.inverse_transform(tables.transform(frame), nan=True)
    for c in frame:
        assert back[c].dtype == frame[c].dtype, c
        assert back[c].isna().tolist() == frame[c].isna().tolist()
        if tables.schema_[c].categorical:
            assert back[c].dropna().tolist() == frame[c].dropna().tolist()
        else:  # scaled through float32
            np.testing.assert_allclose(back[c].dropna().astype(float), frame[c].dropna().astype(float), rtol=1e-6)


# --- model constructors ---------------------------------------------------------------------

SEQUENCE = pm.Schema([pm.Modality("s", (2,), "gaussian", sequential=True)])
CONFIGS = [
    ("MVAE subsets=-1", pm.MVAE, SCHEMA, {"subsets": -1}, r"subsets must be >= 0, got -1"),
    ("latent_dim 0", pm.MVAE, SCHEMA, {"latent_dim": 0}, r"latent_dim must be >= 1, got 0"),
    ("latent_dim negative", pm.MIWAE, SCHEMA, {"latent_dim": -4}, r"latent_dim must be >= 1, got -4"),
    ("latent_dim 2.5", pm.MVAE, SCHEMA, {"latent_dim": 2.5}, r"latent_dim must be an int, got 2\.5"),
    ("latent_dim '16'", pm.VSAE, SCHEMA, {"latent_dim": "16"}, r"latent_dim must be an int, got '16'"),
    ("a hidden width of 0", pm.MVAE, SCHEMA, {"hidden": (64, 0)}, r"hidden must be >= 1.*element 0"),
    ("hidden as a string", pm.ZeroFillVAE, SCHEMA, {"hidden": "64"}, r"hidden must be a tuple"),
    ("negative weight", pm.MVAE, SCHEMA, {"weights": {"x": -1.0}}, r"weights must be >= 0"),
    ("cross='yes'", pm.MVAE, SCHEMA, {"cross": "yes"}, r"cross must be a bool, got 'yes'"),
    ("MIWAE samples 0", pm.MIWAE, SCHEMA, {"samples": 0}, r"samples must be >= 1, got 0"),
    ("VSAE hide 1.5", pm.VSAE, SCHEMA, {"hide": 1.5}, r"hide must be in \[0, 1\], got 1\.5"),
    ("VSAE fill 'mean'", pm.VSAE, SCHEMA, {"fill": "mean"}, r"fill must be one of \['noise', 'zeros'\], got 'mean'"),
    ("DKS direction", pm.DKS, SEQUENCE, {"direction": "sideways"}, r"direction must be one of \['forward', 'backward'\]"),
    ("MDMM particles 0", pm.MDMM, SEQUENCE, {"particles": 0}, r"particles must be >= 1, got 0"),
    ("MDMM burst 2", pm.MDMM, SEQUENCE, {"burst": 2.0}, r"burst must be in \[0, 1\], got 2\.0"),
]


@pytest.mark.parametrize("cls, schema, options, message", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_model_configs_refuse_bad_values(cls, schema, options, message):
    with pytest.raises(pm.ConfigError, match=message):
        cls(schema, **options)
    with pytest.raises(pm.ConfigError, match=message):  # a config built directly is checked too
        cls.Config(**options)


def test_config_values_are_normalised():
    config = pm.MVAEConfig(hidden=[16, 8], latent_dim=np.int64(3))
    assert config.hidden == (16, 8) and type(config.latent_dim) is int


# --- the task API ---------------------------------------------------------------------------

OTHER = pm.Schema([pm.Modality("x", (4,), "gaussian"), pm.Modality("b", (2,), "bernoulli")])
TASKS = [
    ("unknown target", lambda m, b: m.predict(b, "label"), pm.DataError, r"predict: unknown target modality 'label'"),
    ("misspelled input", lambda m, b: m.predict(b, "y", inputs=["xx"]), pm.DataError, r"unknown input modalities \['xx'\]"),
    ("inputs as a bare string", lambda m, b: m.predict(b, "y", inputs="x"), pm.DataError, r"inputs must be a list.*'x'"),
    ("target among inputs", lambda m, b: m.predict(b, "y", inputs=["y"]), ValueError, r"target 'y' cannot also be an input"),
    ("generate n=-1", lambda m, b: m.generate(-1), ValueError, r"generate: n must be an integer >= 1, got -1"),
    ("generate n=2.5", lambda m, b: m.generate(2.5), ValueError, r"n must be an integer >= 1, got 2\.5"),
    ("generate n='3'", lambda m, b: m.generate("3"), ValueError, r"n must be an integer >= 1, got '3'"),
    ("impute samples=-1", lambda m, b: m.impute(b, samples=-1), ValueError, r"impute: samples must be an integer >= 0"),
    ("impute chunk=0", lambda m, b: m.impute(b, samples=5, chunk=0), ValueError, r"chunk must be an integer >= 1, got 0"),
    ("log_likelihood n_samples=0", lambda m, b: m.log_likelihood(b, n_samples=0), ValueError, r"n_samples must be.* >= 1"),
    ("embed a dict", lambda m, b: m.embed(good_data()), TypeError, r"MVAE.embed: expected a Batch.*got dict"),
    ("a batch of another schema", lambda m, b: m.impute(pm.Batch.from_data(OTHER, {"x": np.zeros((2, 4))})), pm.DataError,
     r"impute: the batch is of another schema.*'x'.*\(4,\)|impute: the batch is of another schema.*\['x', 'b'\]"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in TASKS], ids=[c[0] for c in TASKS])
def test_task_methods_refuse_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(model(), batch())


@pytest.mark.parametrize("samples", [0, 5])
def test_imputing_no_rows_gives_no_rows(samples):
    empty = batch().without("y").select(torch.arange(0))
    filled = model().impute(empty, samples=samples)
    assert len(filled) == 0 and filled.schema == SCHEMA and all(m.all() for m in filled.observed.values())


# --- Trainer options and data, with the run folder unchanged ---------------------------------

TRAINERS = [
    ("epochs=2.5", {"epochs": 2.5}, None, pm.ConfigError, r"epochs must be an int, got 2\.5"),
    ("epochs='3'", {"epochs": "3"}, None, pm.ConfigError, r"epochs must be an int, got '3'"),
    ("lr=0", {"lr": 0.0}, None, pm.ConfigError, r"lr must be > 0, got 0\.0"),
    ("lr=nan", {"lr": float("nan")}, None, pm.ConfigError, r"lr must be > 0, got nan"),
    ("batch_size=0", {"batch_size": 0}, None, pm.ConfigError, r"batch_size must be >= 1"),
    ("optimizer sgd", {"optimizer": "sgd"}, None, pm.ConfigError, r"optimizer must be one of \['adam', 'adamw'\]"),
    ("clip_grad negative", {"clip_grad": -1.0}, None, pm.ConfigError, r"clip_grad must be > 0"),
    ("fit given a dict", {}, lambda: good_data(), TypeError, r"fit \(training data\): expected a Batch.*got dict"),
    ("fit given another schema", {}, lambda: pm.Batch.from_data(OTHER, {"x": np.zeros((2, 4))}), pm.DataError,
     r"training data.*another schema"),
    ("nothing observed anywhere", {}, lambda: batch().without("x", "b", "y"), pm.DataError,
     r"training data has no observed entry in any modality of \['x', 'b', 'y'\]"),
]
if not torch.cuda.is_available():
    TRAINERS.append(("device cuda without CUDA", {"device": "cuda"}, None, pm.ConfigError, r"'cuda': CUDA is not available"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder with a checkpoint of two epochs."""
    out = tmp_path_factory.mktemp("run")
    pm.Trainer(model(), epochs=2, batch_size=4, progress=False, out=str(out)).fit(batch())
    return out


@pytest.mark.parametrize("options, data, error, message", [c[1:] for c in TRAINERS], ids=[c[0] for c in TRAINERS])
def test_trainer_refuses_bad_options_and_data_and_leaves_the_run_folder(run, options, data, error, message):
    before = folder_hash(run)
    with pytest.raises(error, match=message):
        trainer = pm.Trainer(model(), **{"epochs": 4, "batch_size": 4, "progress": False, "out": str(run), **options})
        trainer.fit(data() if data else batch(), resume=True)
    assert folder_hash(run) == before


def test_a_run_folder_may_be_a_path(tmp_path):
    trainer = pm.Trainer(model(), epochs=1, batch_size=4, progress=False, out=tmp_path / "run")
    trainer.fit(batch())
    assert trainer.config.out == str(tmp_path / "run") and (tmp_path / "run" / "checkpoint.pt").is_file()


# --- resume ----------------------------------------------------------------------------------

def _text(path):
    path.write_text("not a checkpoint")


def _without(key):
    def damage(path):
        checkpoint = torch.load(path, weights_only=True)
        del checkpoint[key]
        torch.save(checkpoint, path)
    return damage


RESUMES = [
    ("a text file", _text, {}, pm.ModelFileError, r"checkpoint\.pt: it is not a polymodal checkpoint"),
    ("an empty file", lambda p: p.write_bytes(b""), {}, pm.ModelFileError, r"checkpoint\.pt: it is not a polymodal checkpoint"),
    ("a list, not a dict", lambda p: torch.save([1, 2], p), {}, pm.ModelFileError, r"checkpoint\.pt: the checkpoint lacks"),
    ("missing optimizer", _without("optimizer"), {}, pm.ModelFileError, r"checkpoint\.pt: the checkpoint lacks \['optimizer'\]"),
    ("missing config", _without("config"), {}, pm.ModelFileError, r"lacks \['config'\]"),
    ("changed lr", None, {"lr": 0.01}, pm.ConfigError, r"changed options \(lr: 0\.001 in the checkpoint, 0\.01 now\).*override"),
    ("changed batch_size and seed", None, {"batch_size": 2, "seed": 3}, pm.ConfigError,
     r"batch_size: 4 .*2 now; seed: 0 .*3 now"),
    ("another model", None, {"model": "other"}, pm.ModelFileError, r"checkpoint\.pt: it does not fit this model"),
]


@pytest.mark.parametrize("damage, options, error, message", [c[1:] for c in RESUMES], ids=[c[0] for c in RESUMES])
def test_resume_refuses_bad_checkpoints_and_changed_options(tmp_path, damage, options, error, message):
    pm.Trainer(model(), epochs=2, batch_size=4, progress=False, out=str(tmp_path)).fit(batch())
    if damage:
        damage(tmp_path / "checkpoint.pt")
    options = dict(options)
    net = pm.MVAE(SCHEMA, latent_dim=3, hidden=(8,)) if options.pop("model", None) else model()
    before = folder_hash(tmp_path)
    with pytest.raises(error, match=message) as caught:
        pm.Trainer(net, **{"epochs": 4, "batch_size": 4, "progress": False, "out": str(tmp_path), **options}).fit(
            batch(), resume=True
        )
    assert "weights_only" not in str(caught.value)
    assert folder_hash(tmp_path) == before


def test_resume_with_override_applies_the_new_options_and_logs_them(tmp_path, caplog):
    pm.Trainer(model(), epochs=2, batch_size=4, progress=False, out=str(tmp_path)).fit(batch())
    trainer = pm.Trainer(model(), epochs=3, batch_size=4, lr=0.01, progress=False, out=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        history = trainer.fit(batch(), resume=True, override=True)
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["lr"] == 0.01
    assert "lr = 0.01 instead of the checkpoint's 0.001" in caplog.text


# --- load ------------------------------------------------------------------------------------

def _edit(folder, change):
    saved = json.loads((folder / "config.json").read_text())
    change(saved)
    (folder / "config.json").write_text(json.dumps(saved))


LOADS = [
    ("written by a newer polymodal", lambda s: s.update(polymodal="9.1.0"),
     r"config\.json was written by polymodal 9\.1\.0, newer than this polymodal 0\.1\.0"),
    ("an unknown option", lambda s: s["config"].update(depth=3), r"config\.json: .*unknown keys \['depth'\]"),
    ("an out-of-range option", lambda s: s["config"].update(latent_dim=0), r"config\.json: .*latent_dim must be >= 1"),
    ("an unknown likelihood", lambda s: s["schema"][0]["likelihood"].update(name="poisson"), r"config\.json: .*poisson"),
    ("an unknown modality key", lambda s: s["schema"][0].update(colour="red"), r"config\.json: .*colour"),
    ("no version", lambda s: s.pop("polymodal"), r"config\.json is corrupt.*polymodal"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in LOADS], ids=[c[0] for c in LOADS])
def test_load_refuses_newer_or_inconsistent_folders(tmp_path, change, message):
    model().save(tmp_path / "m")
    _edit(tmp_path / "m", change)
    before = folder_hash(tmp_path)
    with pytest.raises(pm.ModelFileError, match=message):
        pm.load(tmp_path / "m")
    assert folder_hash(tmp_path) == before


def test_load_refuses_weights_that_are_not_finite(tmp_path):
    net = model()
    with torch.no_grad():
        net.decoders["x"].body[-1].bias[0] = float("nan")
    net.save(tmp_path / "m")
    before = folder_hash(tmp_path)
    with pytest.raises(pm.ModelFileError, match=r"model\.safetensors: weights \['decoders\.x\.body\.\d+\.bias'\] hold NaN"):
        pm.load(tmp_path / "m")
    assert folder_hash(tmp_path) == before


def test_a_model_from_an_older_version_loads(tmp_path):
    model().save(tmp_path / "m")
    _edit(tmp_path / "m", lambda s: s.update(polymodal="0.0.9"))
    assert isinstance(pm.load(tmp_path / "m"), pm.MVAE)


# --- the Imputer ------------------------------------------------------------------------------

FAST = {"steps": 3, "samples": 10, "validation": 0.0}


def people():
    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame({
        "Sepal.Length": rng.normal(5, 1, n),
        "values": rng.normal(size=n),  # a name that is an attribute of torch's ModuleDict
        "rooms": pd.array(rng.integers(1, 6, n), dtype="Int64"),
        "owner": pd.array(rng.random(n) < 0.5, dtype="boolean"),
        "colour": pd.Series(rng.choice(["red", "blue", "green"], n), dtype="str"),
        "kind": pd.Series(rng.choice(["a", "b"], n), dtype="category"),
    })
    holes = rng.random(frame.shape) < 0.2
    for j, c in enumerate(frame.columns):
        frame.loc[holes[:, j], c] = None
    return frame


@pytest.mark.parametrize("name", ["miwae", "vsae", "mvae"])
def test_the_imputer_fills_real_tables_and_keeps_their_dtypes(name):
    frame = people()
    filled = pm.Imputer(model=name, round_integers=True, **FAST).fit(frame).transform(frame)
    assert not filled.isna().any().any()
    assert list(filled.dtypes) == list(frame.dtypes)
    observed = frame.notna()
    for c in frame:
        assert filled[c][observed[c]].tolist() == frame[c][observed[c]].tolist()
    assert set(filled["colour"]) <= {"red", "blue", "green"} and set(filled["kind"]) <= {"a", "b"}
    estimates = pm.Imputer(model=name, **FAST).fit(frame).transform(frame)["rooms"]  # not rounded by default
    assert estimates.dtype == "Float64" and (estimates % 1 != 0).any()
    assert estimates[observed["rooms"]].tolist() == frame["rooms"][observed["rooms"]].tolist()


def test_modules_keyed_by_awkward_modality_names_save_and_load(tmp_path):
    schema = pm.Schema([pm.Modality("Sepal.Length"), pm.Modality("values"), pm.Modality("50%.quantile")])
    net = pm.MVAE(schema, latent_dim=2, hidden=(4,))
    assert list(net.encoders) == schema.names and "Sepal.Length" in net.decoders
    assert "encoders.Sepal%2ELength.body.0.0.weight" in net.state_dict()
    data = pm.Batch.from_data(schema, {name: np.arange(4.0) for name in schema.names})
    net.save(tmp_path / "m")
    torch.testing.assert_close(pm.load(tmp_path / "m").embed(data), net.embed(data))


@pytest.mark.parametrize("name", ["mdmm", "dks"])
def test_the_imputer_refuses_sequence_models_up_front(name):
    expected = rf"model must be 'auto', one of \[.*'miwae'.*\].*, got '{name}' \('{name}' models sequences"
    with pytest.raises(pm.ConfigError, match=expected):
        pm.Imputer(model=name).fit(people())


IMPUTERS = [
    ("samples -1", {"samples": -1}, r"samples must be an integer >= 0, got -1"),
    ("random_state None", {"random_state": None}, r"random_state must be an integer >= 0, got None"),
    ("validation 1", {"validation": 1.0}, r"validation must be a fraction in \[0, 1\), got 1\.0"),
    ("steps 2.5", {"steps": 2.5}, r"steps must be an integer >= 1, got 2\.5"),
    ("batch_size 0", {"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
    ("options of two models", {"model": ["miwae", "vsae"], "model_options": {"latent_dim": 2}},
     r"model_options configure one model; with model=\['miwae', 'vsae'\] leave them out"),
    ("only scikit-learn's", {"model": ["iterative"]}, r"need a generative model among them"),
    ("model option out of range", {"model_options": {"latent_dim": 0}}, r"latent_dim must be >= 1, got 0"),
]


@pytest.mark.parametrize("options, message", [c[1:] for c in IMPUTERS], ids=[c[0] for c in IMPUTERS])
def test_the_imputer_refuses_bad_options(options, message):
    with pytest.raises(pm.ConfigError, match=message):
        pm.Imputer(**{**FAST, **options}).fit(people())


@pytest.mark.parametrize("draws", [1, 0, 2.5])
def test_the_predictive_spread_needs_two_draws(draws):
    imputer = pm.Imputer(**{**FAST, "model": "miwae"}).fit(people().drop(columns=["owner", "colour", "kind"]))
    with pytest.raises(pm.ConfigError, match=rf"predictive_std: draws must be an integer >= 2 .*got {draws}"):
        imputer.predictive_std(people().drop(columns=["owner", "colour", "kind"]), draws=draws)


def test_the_imputer_refuses_dates_and_inf_naming_the_column():
    with pytest.raises(pm.DataError, match="column 'when'.*dates"):
        pm.Imputer(**FAST).fit(people().assign(when=pd.Timestamp("2024-01-01")))
    with pytest.raises(pm.DataError, match="column 'values'.*infinite"):
        pm.Imputer(**FAST).fit(people().assign(values=np.inf))


def test_the_imputer_transform_is_reproducible_and_leaves_the_global_stream():
    x = np.random.default_rng(1).normal(size=(30, 4))
    x[::3, 1] = np.nan
    imputer = pm.Imputer(**FAST).fit(x)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    first, second = imputer.transform(x), imputer.transform(x)
    np.testing.assert_array_equal(first, second)
    assert torch.rand(1) == expected
    other = pm.Imputer(**{**FAST, "random_state": 5}).fit(x).transform(x)
    assert not np.array_equal(first, other)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_the_imputer_passes_scikit_learn_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(pm.Imputer(steps=2, samples=5, validation=0.0), on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert failed == []
    # the only skip: scikit-learn checks array-API input only with SCIPY_ARRAY_API=1 set
    assert skipped <= {"check_array_api_input"}


# --- training faults ---------------------------------------------------------------------------

def test_a_non_finite_term_names_its_modality():
    net = model()
    with torch.no_grad():
        net.decoders["x"].body[-1].bias.fill_(float("inf"))
    with pytest.raises(pm.NonFiniteLossError, match=r"epoch 1, step 1 of 2: the reconstruction term of modality 'x'"):
        pm.Trainer(net, epochs=2, batch_size=4, progress=False).fit(batch())


def test_values_too_large_for_the_likelihood_blame_the_data_not_the_learning_rate():
    data = good_data(8)
    data["x"][3, 1] = 1e20  # its square overflows float32
    with pytest.raises(pm.NonFiniteLossError, match=r"epoch 1, step 1 of 1: .*first step, before any update, so the "
                                                    r"data, not the learning rate: values 'x' up to 1e\+20") as caught:
        pm.Trainer(model(), epochs=2, batch_size=8, progress=False).fit(pm.Batch.from_data(SCHEMA, data))
    assert "lower lr" not in str(caught.value)


def test_a_diverging_run_warns():
    data = pm.Batch.from_data(SCHEMA, good_data(64))
    with pytest.warns(pm.training.DivergenceWarning, match=r"grew from .* to .*e\+\d\d in epoch 1: training is diverging"):
        pm.Trainer(model(), epochs=2, batch_size=8, lr=1e3, progress=False).fit(data)


# --- files: fsync, and temporary files of killed writes -----------------------------------------

KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from polymodal.files import atomic_write

    def slow(tmp):
        tmp.write_text("half")
        print("writing", flush=True)
        time.sleep(60)

    atomic_write(Path(sys.argv[1]), slow)
""")


def test_a_write_killed_by_sigkill_leaves_the_old_file_and_the_next_write_removes_its_tmp(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_text("previous")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    stale = list(tmp_path.glob(".checkpoint.pt.*.tmp"))
    assert len(stale) == 1 and path.read_text() == "previous"
    atomic_write(path, lambda p: p.write_text("next"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"] and path.read_text() == "next"


def test_writes_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), replace(a, b))[1])
    atomic_write(tmp_path / "f", lambda p: p.write_text("x"))
    assert events == ["fsync", "replace", "fsync"] if os.name == "posix" else ["fsync", "replace"]


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring the old one after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def test_new_files_follow_the_umask_and_overwritten_files_keep_their_mode(tmp_path, umask):
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    umask(0o022)
    pm.write_frame(table(), tmp_path / "out.csv")
    assert mode(tmp_path / "out.csv") == 0o644
    (tmp_path / "out.csv").chmod(0o640)
    pm.write_frame(table(), tmp_path / "out.csv")
    assert mode(tmp_path / "out.csv") == 0o640
    model = pm.MIWAE(SCHEMA, latent_dim=2, hidden=(4,))
    model.save(tmp_path / "model")
    assert mode(tmp_path / "model") == 0o755 and {mode(p) for p in (tmp_path / "model").iterdir()} == {0o644}
    umask(0o077)
    atomic_write(tmp_path / "private", lambda p: p.write_text("x"))
    assert mode(tmp_path / "private") == 0o600
    (tmp_path / "private").chmod(0o444)  # read-only: still replaced, and still read-only
    atomic_write(tmp_path / "private", lambda p: p.write_text("y"))
    assert mode(tmp_path / "private") == 0o444 and (tmp_path / "private").read_text() == "y"


# --- the command line ----------------------------------------------------------------------------

CLI = [
    ("paired 1.5", ["demo", "--paired", "1.5"], r"--paired: must be a fraction in \[0, 1\], got 1\.5"),
    ("paired -0.1", ["demo", "--paired", "-0.1"], r"--paired: must be a fraction"),
]
if not torch.cuda.is_available():
    CLI.append(("device cuda", ["demo", "--device", "cuda"], r"--device: device 'cuda': CUDA is not available"))


@pytest.mark.parametrize("argv, message", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_the_demo_refuses_bad_arguments_before_loading_data(argv, message, monkeypatch, capsys):
    from polymodal import cli, commands

    monkeypatch.setattr(commands, "load_digits", lambda **_: pytest.fail("data loaded before the arguments were checked"))
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert __import__("re").search(message, capsys.readouterr().err)


def test_load_digits_refuses_a_paired_fraction_above_one():
    with pytest.raises(ValueError, match=r"paired must be a fraction in \[0, 1\], got 1\.5"):
        pm.load_digits(paired=1.5)


# --- fuzzing ---------------------------------------------------------------------------------

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 0.5, 2.0, 1e39, np.nan]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 4),
    width=st.integers(2, 4),
    x=st.data(),
    kind=st.sampled_from(["float64", "float32", "int64", "bool", "object"]),
)
def test_fuzz_batches_either_refuse_clearly_or_round_trip(n, width, x, kind):
    schema = pm.Schema([pm.Modality("v", (3,), "gaussian"), pm.Modality("b", (), "bernoulli"),
                        pm.Modality("c", (), "categorical", num_classes=3)])
    values = x.draw(hnp.arrays(np.float64, (n, width), elements=FLOATS))
    flags = x.draw(hnp.arrays(np.float64, (n,), elements=FLOATS))
    classes = x.draw(hnp.arrays(np.float64, (n,), elements=FLOATS))
    if kind == "object":
        values = values.astype(object)
        if n and x.draw(st.booleans()):
            values[0, 0] = x.draw(st.sampled_from(["a", "?", None, {"k": 1}]))
    elif kind != "float64":
        with np.errstate(invalid="ignore", over="ignore"):
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).astype(kind)
    try:
        made = pm.Batch.from_data(schema, {"v": values, "b": flags, "c": classes})
    except pm.DataError as error:
        assert "modality" in str(error) or "samples" in str(error) or "empty" in str(error)
        return
    assert width == 3 and n > 0
    back = made.numpy()
    given_values = pd.DataFrame(values).astype(float).to_numpy()
    np.testing.assert_allclose(back["v"], given_values.astype(np.float32), equal_nan=True)
    np.testing.assert_array_equal(back["b"], flags.astype(np.float32))  # values are stored as float32
    np.testing.assert_array_equal(back["c"], classes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.data(), n=st.integers(1, 6))
def test_fuzz_tables_either_refuse_clearly_or_round_trip(x, n):
    kinds = x.draw(st.lists(st.sampled_from(["float", "Int64", "category", "str", "object", "boolean"]), min_size=1, max_size=4))
    columns = {}
    for j, kind in enumerate(kinds):
        if kind == "float":
            cells = x.draw(st.lists(FLOATS, min_size=n, max_size=n))
            columns[f"c{j}.{kind}"] = pd.Series(cells, dtype=float)
        elif kind == "Int64":
            cells = x.draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=n, max_size=n))
            columns[f"c{j}.{kind}"] = pd.array(cells, dtype="Int64")
        elif kind == "boolean":
            cells = x.draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n))
            columns[f"c{j}.{kind}"] = pd.array(cells, dtype="boolean")
        else:
            words = st.one_of(st.none(), st.sampled_from(["red", "blue", "?", "1.5", "2"]))
            cells = x.draw(st.lists(words, min_size=n, max_size=n))
            columns[f"c{j}.{kind}"] = pd.Series(cells, dtype=kind)
    frame = pd.DataFrame(columns)
    try:
        tables = pm.TableSchema().fit(frame)
        made = tables.transform(frame)
    except pm.DataError as error:
        assert "column" in str(error)
        return
    back = tables.inverse_transform(made, nan=True)
    for c in frame:
        assert back[c].dtype == frame[c].dtype
        assert back[c].isna().tolist() == frame[c].isna().tolist()
        if c in tables.categories_:
            assert back[c].dropna().tolist() == frame[c].dropna().tolist()
        else:
            given_values = frame[c].dropna().astype(float)
            span = float(given_values.max() - given_values.min()) if len(given_values) else 0.0
            np.testing.assert_allclose(back[c].dropna().astype(float), given_values, rtol=1e-6, atol=1e-6 * span)



@pytest.mark.parametrize("schema", [None, ["x"], {"x": (3,)}], ids=["none", "list", "dict"])
def test_a_model_refuses_what_is_not_a_schema(schema):
    with pytest.raises(TypeError, match=r"MVAE: expected a Schema of modalities, got (NoneType|list|dict)"):
        pm.MVAE(schema)
