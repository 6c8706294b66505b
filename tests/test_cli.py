"""End to end: every command on small files the test writes itself, checking what comes back."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from test_input import folder_hash

import polymodal
from polymodal.cli import main
from polymodal.datasets.files import read_frame
from polymodal.models import MODELS
from polymodal.run import example_config, load_config, parse_config

FAST_TABLE = {"epochs": 20, "batch_size": 32, "progress": False}
FAST_SEQUENCE = {"latent_dim": 2, "hidden": [8], "transition_hidden": 8, "particles": 4, "eval_particles": 8,
                 "match_particles": 4}


def run(*argv):
    """Run the command in this process; its exit code (0 when it returns)."""
    try:
        main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code
    return 0


def clusters(n=240, seed=0):
    """Two well-separated classes over four numeric columns, an id column, 15% holes."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4)) * 0.5 + 3.0 * label[:, None]
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["kind"] = np.where(label == 1, "high", "low")
    truth = frame.copy()
    holes = rng.random(frame.shape) < 0.15
    frame = frame.mask(holes)
    frame.insert(0, "id", np.arange(n) + 500)
    return frame, truth


def write_config(path, train, model="miwae", options=None, trainer=None, **data):
    config = {"data": {"train": train if isinstance(train, list) else str(train), **data},
              "model": {"name": model, "options": options or {}}, "trainer": trainer or FAST_TABLE,
              "evaluate": {"mask_rate": 0.2, "samples": 20}}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    frame, truth = clusters()
    frame.to_csv(root / "train.csv", index=False)
    assert run("fit", write_config(root / "run.yaml", "train.csv", model="mvae"), "--out", root / "run", "--quiet") == 0
    return root, frame, truth


def test_fit_writes_the_run_folder(table_run):
    root, _, _ = table_run
    for name in ("config.yaml", "history.csv", "checkpoint.pt", "scores.json", "report.html", "model/transform.json"):
        assert (root / "run" / name).is_file(), name
    assert len(pd.read_csv(root / "run" / "history.csv")) == FAST_TABLE["epochs"]


def test_impute_keeps_observed_cells_and_fills_holes(table_run, capsys):
    root, frame, _ = table_run
    assert run("impute", root / "run", root / "train.csv", "-o", root / "filled.csv", "--samples", "20", "--quiet") == 0
    filled = read_frame(root / "filled.csv")
    assert list(filled.columns) == list(frame.columns) and (filled.dtypes == frame.dtypes).all()
    assert not filled.isna().any().any()
    observed = frame.notna().to_numpy()
    assert (filled.to_numpy()[observed] == frame.to_numpy()[observed]).all()
    assert set(filled["kind"]) <= {"high", "low"} and filled["id"].tolist() == frame["id"].tolist()
    assert "filled.csv" in capsys.readouterr().out


def test_impute_draws_writes_k_different_imputations(table_run):
    root, frame, _ = table_run
    assert run("impute", root / "run", root / "train.csv", "-o", root / "mi.csv", "--draws", "2", "--quiet") == 0
    a, b = read_frame(root / "mi.draw1.csv"), read_frame(root / "mi.draw2.csv")
    holes = frame["a"].isna()
    assert not a.isna().any().any() and (a.loc[~holes, "a"] == frame.loc[~holes, "a"]).all()
    assert (a.loc[holes, "a"] != b.loc[holes, "a"]).any()


def test_predict_beats_chance(table_run, tmp_path):
    root, _, _ = table_run
    test, truth = clusters(n=100, seed=1)
    test.drop(columns="kind").to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "kind.csv"
    assert run("predict", root / "run", tmp_path / "test.csv", "--target", "kind", "--inputs", "a,b,c,d", "-o", out) == 0
    predicted = read_frame(out)
    assert list(predicted.columns) == ["id", "kind"] and predicted["id"].tolist() == test["id"].tolist()
    assert (predicted["kind"] == truth["kind"]).mean() > 0.8  # chance is about 0.5


def test_evaluate_scores_any_table(table_run, capsys, tmp_path):
    root, _, _ = table_run
    scores = tmp_path / "scores.json"
    code = run("evaluate", root / "run" / "model", root / "train.csv", "--mask-rate", "0.3", "--mechanism", "mcar",
               "--seed", "1", "--samples", "20", "--json", scores, "--quiet")
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["modality", "entries", "metric", "model", "mean", "mode", "log_likelihood"]
    values = yaml.safe_load(scores.read_text())
    assert set(values) == {"a", "b", "c", "d", "kind"} and 0 < values["a"]["nrmse"] < 1.0
    assert values["kind"]["accuracy"] > 0.8 and abs(values["kind"]["accuracy"] + values["kind"]["pfc"] - 1) < 1e-9
    assert values["a"]["nrmse"] < values["a"]["baselines"]["mean"]["nrmse"] and values["a"]["worse_than"] == []
    assert values["kind"]["pfc"] < values["kind"]["baselines"]["mode"]["pfc"]
    assert run("evaluate", root / "run", root / "train.csv", "--mechanism", "mnar", "--quiet") == 0


def test_fit_and_impute_fit_end_with_the_scores_beside_the_baselines(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    frame = pd.DataFrame({"u": x[:, 0], "v": x[:, 0] + 0.1 * x[:, 1]}).mask(rng.random((80, 2)) < 0.2)
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = {"data": {"train": "t.csv"}, "model": {"name": "miwae"}, "trainer": {"epochs": 2, "progress": False},
              "evaluate": {"samples": 5}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert run("fit", tmp_path / "run.yaml", "--out", tmp_path / "run", "--quiet") == 0
    out = capsys.readouterr().out.splitlines()
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    header = out.index(next(line for line in out if line.startswith("modality")))
    assert out[header].split() == ["modality", "entries", "metric", "model", "mean", "log_likelihood"]
    for line in out[header + 1 : header + 3]:
        name, entries, key, model, mean, _ = line.split()
        assert int(entries) == scores[name]["entries"] and key == "nrmse"
        assert model.endswith("!") == bool(scores[name]["worse_than"])
        assert float(mean) == pytest.approx(scores[name]["baselines"]["mean"]["nrmse"], rel=1e-3)
    assert out[-1].startswith("run written to")
    assert run("impute", "--fit", tmp_path / "t.csv", "-o", tmp_path / "f.csv", "--model", "gaussian", "--quiet") == 0
    out = capsys.readouterr().out
    assert "held-out score" in out and "mean/mode" in out and "imputed table written" in out


def test_info_and_report(table_run, capsys):
    root, _, _ = table_run
    assert run("info", root / "run") == 0
    printed = capsys.readouterr().out
    assert "model: mvae" in printed and "kind: scalar, categorical, 2 classes" in printed
    assert f"training: {FAST_TABLE['epochs']} epochs" in printed and "columns ['a', 'b', 'c', 'd', 'kind']" in printed
    (root / "run" / "report.html").unlink()
    assert run("report", root / "run", "--quiet") == 0
    page = (root / "run" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "Scores on hidden entries" in page


def test_impute_fit_on_npz_and_save(tmp_path):
    frame, _ = clusters(n=80)
    x = frame[["a", "b", "c", "d"]].to_numpy()
    np.savez(tmp_path / "x.npz", table=x)
    assert run("impute", "--fit", tmp_path / "x.npz", "-o", tmp_path / "y.npz", "--steps", "3", "--samples", "10",
               "--save", tmp_path / "imputer", "--quiet") == 0
    with np.load(tmp_path / "y.npz") as out:
        y = out["table"]
    assert y.shape == x.shape and not np.isnan(y).any() and (y[~np.isnan(x)] == x[~np.isnan(x)]).all()
    assert run("impute", tmp_path / "imputer", tmp_path / "x.npz", "-o", tmp_path / "z.npz", "--quiet") == 0
    with np.load(tmp_path / "z.npz") as out:
        np.testing.assert_array_equal(out["table"], y)  # the saved blend fills as the fitted one did
    assert run("impute", tmp_path / "imputer", tmp_path / "x.npz", "-o", tmp_path / "d.npz", "--draws", "2",
               "--quiet") == 0
    for k in (1, 2):
        with np.load(tmp_path / f"d.draw{k}.npz") as out:
            draw = out["table"]
        assert not np.isnan(draw).any() and (draw[~np.isnan(x)] == x[~np.isnan(x)]).all()


def test_impute_fit_on_parquet_keeps_index_and_dtypes(tmp_path):
    pytest.importorskip("pyarrow")
    frame, _ = clusters(n=80)
    frame = frame.drop(columns="id").set_axis(pd.Index([f"s{i}" for i in range(80)], name="sample"))
    frame["kind"] = frame["kind"].astype("category")
    frame["count"] = np.arange(80)  # an integer column without holes stays integer
    frame.to_parquet(tmp_path / "x.parquet")
    assert run("impute", "--fit", tmp_path / "x.parquet", "-o", tmp_path / "y.parquet", "--steps", "3",
               "--samples", "10", "--quiet") == 0
    filled = pd.read_parquet(tmp_path / "y.parquet")
    assert filled.index.equals(frame.index) and (filled.dtypes == frame.dtypes).all()
    assert not filled.isna().any().any() and filled["count"].tolist() == list(range(80))
    observed = frame["a"].notna()
    assert (filled.loc[observed, "a"] == frame.loc[observed, "a"]).all()


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    (tmp_path / "x.parquet").write_bytes(b"")
    assert run("impute", "--fit", tmp_path / "x.parquet", "-o", tmp_path / "y.csv") == 2
    assert "pip install polymodal[parquet]" in capsys.readouterr().err


def spirals_long(n=16, steps=12, seed=0):
    """Long-format 2-D spirals of different lengths with steps deleted, and the complete truth."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = steps - (i % 3)
        t = np.arange(length)
        angle = 0.5 * t + rng.uniform(0, np.pi)
        rows.append(pd.DataFrame({"id": f"s{i}", "time": t + 10, "x": np.cos(angle) * (1 + 0.1 * t), "y": np.sin(angle)}))
    truth = pd.concat(rows, ignore_index=True)
    kept = truth[(rng.random(len(truth)) > 0.2) | (truth["time"] == 10)].copy()  # whole steps deleted
    kept.loc[kept.sample(frac=0.1, random_state=0).index, "y"] = np.nan  # and single cells
    return kept.reset_index(drop=True), truth


def test_long_format_sequences_fit_impute_predict(tmp_path):
    data, truth = spirals_long()
    data.to_csv(tmp_path / "seq.csv", index=False)
    config = write_config(tmp_path / "seq.yaml", "seq.csv", model="mdmm", options=FAST_SEQUENCE,
                          trainer={"epochs": 2, "batch_size": 8, "progress": False}, time="time", validation=0.25)
    assert run("fit", config, "--out", tmp_path / "run", "--quiet") == 0
    assert run("impute", tmp_path / "run", tmp_path / "seq.csv", "-o", tmp_path / "filled.csv", "--quiet") == 0
    filled = read_frame(tmp_path / "filled.csv")
    keys = ["id", "time"]
    assert list(filled.columns) == list(data.columns) and not filled.isna().any().any()
    spans = data.groupby("id")["time"].max() - 9  # each sequence from its first (10) to its last kept step
    assert len(filled) == spans.sum() and (filled.groupby("id")["time"].max() - 9).equals(spans)
    assert filled.merge(truth[keys], on=keys).shape[0] == len(filled)  # deleted steps come back, padding does not
    both = data.merge(filled, on=keys, suffixes=("", "_filled"))
    seen = both["y"].notna()
    assert (both.loc[seen, "y"] == both.loc[seen, "y_filled"]).all() and (both["x"] == both["x_filled"]).all()
    assert run("predict", tmp_path / "run", tmp_path / "seq.csv", "--target", "y", "-o", tmp_path / "y.csv") == 0
    predicted = read_frame(tmp_path / "y.csv")
    assert list(predicted.columns) == ["id", "time", "y"] and predicted[keys].equals(filled[keys])
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Sequences: observed, hidden and imputed" in page


def test_npz_sequences_and_files_joined_on_id(tmp_path):
    data, _ = spirals_long()
    grid = data.pivot(index="id", columns="time")
    array = np.stack([grid["x"].to_numpy(), grid["y"].to_numpy()], -1)  # [N, T, 2] with NaN
    np.savez(tmp_path / "seq.npz", X=array)
    config = write_config(tmp_path / "seq.yaml", "seq.npz", model="dks", options={"latent_dim": 2, "hidden": [8]},
                          trainer={"epochs": 2, "batch_size": 8, "progress": False})
    assert run("fit", config, "--out", tmp_path / "run", "--quiet") == 0
    assert run("impute", tmp_path / "run", tmp_path / "seq.npz", "-o", tmp_path / "out.npz", "--quiet") == 0
    with np.load(tmp_path / "out.npz") as out:
        filled, names = out["X"], out["columns"].tolist()
    seen = ~np.isnan(array)
    assert filled.shape == array.shape and names == ["x0", "x1"] and not np.isnan(filled).any()
    assert (filled[seen] == array[seen]).all()
    assert run("impute", "--fit", tmp_path / "seq.npz", "-o", tmp_path / "x.npz") == 2  # an Imputer fills tables only

    frame, _ = clusters(n=120)
    frame[["id", "a", "b"]].to_csv(tmp_path / "left.csv", index=False)
    frame[["id", "c", "d", "kind"]].sample(frac=0.8, random_state=0).to_csv(tmp_path / "right.csv", index=False)
    config = write_config(tmp_path / "join.yaml", ["left.csv", "right.csv"], trainer=dict(FAST_TABLE, epochs=2))
    raw = yaml.safe_load(config.read_text())
    raw["schema"] = {"groups": {"cd": ["c", "d"]}}
    config.write_text(yaml.safe_dump(raw))
    assert run("fit", config, "--out", tmp_path / "joined", "--quiet") == 0
    assert run("info", tmp_path / "joined") == 0


def test_unknown_config_key_names_it_where_and_the_nearest(tmp_path, capsys):
    frame, _ = clusters(n=40)
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = write_config(tmp_path / "c.yaml", "t.csv", options={"latent_dims": 4})
    assert run("fit", config, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.options" in err and "'latent_dims'" in err
    assert "did you mean 'latent_dim'" in err and "Valid keys are ['latent_dim'" in err
    raw = yaml.safe_load(config.read_text())
    raw["model"]["options"] = {}
    raw["trainer"]["epoch"] = 3
    config.write_text(yaml.safe_dump(raw))
    assert run("fit", config) == 2 and "trainer: unknown keys ['epoch']; did you mean 'epochs'?" in capsys.readouterr().err
    raw["trainer"] = {"epochs": "ten"}
    config.write_text(yaml.safe_dump(raw))
    assert run("fit", config) == 2 and "trainer.epochs: expected int" in capsys.readouterr().err
    with pytest.raises(Exception, match="epochs"):
        main(["fit", str(config), "--debug"])


def test_bad_input_is_one_line_and_exit_code_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "polymodal", "impute", str(tmp_path), str(tmp_path / "none.csv")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "polymodal impute: error:" in result.stderr


@pytest.mark.parametrize("model", sorted(MODELS))
def test_config_prints_every_option_and_parses_back(model, capsys, tmp_path):
    assert run("config", model) == 0
    text = capsys.readouterr().out
    raw = yaml.safe_load(text)
    assert set(raw["model"]["options"]) == {f for f in MODELS[model].Config.__dataclass_fields__}
    raw["data"]["train"] = "x.csv"
    config = parse_config(raw, tmp_path)
    assert config.model.name == model and config.data.train == str(tmp_path / "x.csv")
    assert text == example_config(model)


@pytest.mark.parametrize("command", ["config", "fit", "impute", "predict", "evaluate", "info", "report", "demo"])
def test_every_command_explains_itself(command, capsys):
    assert run(command, "--help") == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: polymodal {command}") and len(text.splitlines()) > 4


def test_fit_resume_continues_the_run(tmp_path):
    frame, _ = clusters(n=60)
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = write_config(tmp_path / "c.yaml", "t.csv", trainer={"epochs": 2, "progress": False})
    assert run("fit", config, "--out", tmp_path / "run", "--quiet") == 0
    raw = yaml.safe_load(config.read_text())
    raw["trainer"]["epochs"] = 4
    config.write_text(yaml.safe_dump(raw))
    assert run("fit", config, "--out", tmp_path / "run", "--resume", "--quiet") == 0
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    raw["trainer"].update(epochs=5, lr=0.01)
    config.write_text(yaml.safe_dump(raw))
    assert run("fit", config, "--out", tmp_path / "run", "--resume", "--quiet") == 2  # changed lr: refused
    assert run("fit", config, "--out", tmp_path / "run", "--resume", "--override", "--quiet") == 0
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5] and history["lr"].tolist()[-1] == 0.01


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_impute_streams_a_file_in_chunks_as_the_imputer_fills_it_in_memory(tmp_path, monkeypatch, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    from polymodal import commands
    from polymodal.imputer import Imputer

    frame, _ = clusters(n=700)
    path = tmp_path / f"x{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    frame = read_frame(path)
    monkeypatch.setattr(commands, "CHUNK_ROWS", 256)  # three chunks
    assert run("impute", "--fit", path, "-o", tmp_path / f"y{suffix}", "--steps", "20", "--samples", "10",
               "--save", tmp_path / "imputer", "--quiet") == 0
    values = frame.drop(columns="id")
    imputer = Imputer(steps=20, samples=10).fit(values)
    expected = frame[["id"]].join(imputer.transform(values))
    pd.testing.assert_frame_equal(read_frame(tmp_path / f"y{suffix}"), expected, check_dtype=False)
    assert run("impute", tmp_path / "imputer", path, "-o", tmp_path / f"z{suffix}", "--quiet") == 0
    pd.testing.assert_frame_equal(read_frame(tmp_path / f"z{suffix}"), expected, check_dtype=False)
    assert run("impute", tmp_path / "imputer", path, "-o", tmp_path / f"d{suffix}", "--draws", "2", "--quiet") == 0
    drawn = frame[["id"]].join(imputer.sample(values, 2)[1])
    pd.testing.assert_frame_equal(read_frame(tmp_path / f"d.draw2{suffix}"), drawn, check_dtype=False)


def test_impute_fit_fits_on_a_sample_of_a_large_file(tmp_path, monkeypatch):
    from polymodal import commands
    from polymodal.imputer import Imputer

    frame, _ = clusters(n=700)
    frame.to_csv(tmp_path / "x.csv", index=False)
    monkeypatch.setattr(commands, "CHUNK_ROWS", 256)
    monkeypatch.setattr(commands, "FIT_ROWS", 300)
    fitted = []
    fit = Imputer.fit
    monkeypatch.setattr(Imputer, "fit", lambda self, X, y=None: fitted.append(X) or fit(self, X))
    assert run("impute", "--fit", tmp_path / "x.csv", "-o", tmp_path / "y.csv", "--steps", "20", "--quiet") == 0
    (sample,) = fitted
    assert len(sample) == 300 and sample.index.is_monotonic_increasing and sample.index.max() > 600
    pd.testing.assert_frame_equal(sample, frame.drop(columns="id").loc[sample.index])
    filled = read_frame(tmp_path / "y.csv")
    assert len(filled) == 700 and not filled.isna().any().any() and filled["id"].tolist() == frame["id"].tolist()


def survey_csv(path, n=60, seed=0):
    """A CSV as R writes MASS::survey-like data: `NA` for missing cells, the exercise level
    `None`, whole-number columns with holes, a column with one category."""
    rng = np.random.default_rng(seed)
    rows = ["Exer,Pulse,Smoke,only,Month,Wind"]
    for i in range(n):
        pulse = "NA" if i % 7 == 3 else str(60 + int(rng.integers(0, 40)))
        smoke = "NA" if i % 11 == 5 else ["Never", "Occas", "Heavy"][i % 3]
        month = "" if i % 5 == 2 else str(5 + i % 5)
        wind = "NA" if i % 9 == 4 else f"{rng.uniform(2, 20):.1f}"
        rows.append(f"{['None', 'Some', 'Freq'][i % 3]},{pulse},{smoke},{'' if i % 6 == 1 else 'yes'},{month},{wind}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_data_comes_back_as_it_went_in(tmp_path, capsys):
    source = survey_csv(tmp_path / "survey.csv")
    given = pd.read_csv(source, keep_default_na=False, dtype=str)
    assert run("impute", "--fit", source, "-o", tmp_path / "out.csv", "--steps", "5", "--samples", "10",
               "--na-values", "NA", "--save", tmp_path / "imputer", "--quiet") == 0
    notes = capsys.readouterr().err
    assert "note: column 'Exer': the categories ['None'] are kept as data" in notes and "Traceback" not in notes
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, dtype=str)
    assert list(out.columns) == list(given.columns) and (out != "").all().all() and (out != "NA").all().all()
    assert out["Exer"].equals(given["Exer"]) and (out["only"] == "yes").all()
    for column in ("Pulse", "Month"):  # whole numbers stay whole, written without ".0"
        assert out[column].str.fullmatch(r"\d+").all(), column
    kept = given["Wind"] != "NA"
    assert out.loc[kept, "Wind"].equals(given.loc[kept, "Wind"])
    assert run("impute", tmp_path / "imputer", source, "-o", tmp_path / "again.csv", "--quiet") == 0  # its markers kept
    assert pd.read_csv(tmp_path / "again.csv", keep_default_na=False, dtype=str).equals(out)

    config = write_config(tmp_path / "survey.yaml", "survey.csv", model="mvae", trainer={"epochs": 3, "progress": False},
                          na_values=["NA"])
    assert run("fit", config, "--out", tmp_path / "run", "--quiet") == 0
    # the model's markers come with it; sampling a one-class column could draw its phantom class
    assert run("impute", tmp_path / "run", source, "-o", tmp_path / "mi.csv", "--draws", "3", "--quiet") == 0
    for k in (1, 2, 3):
        draw = pd.read_csv(tmp_path / f"mi.draw{k}.csv", keep_default_na=False, dtype=str)
        assert (draw["only"] == "yes").all() and draw["Exer"].equals(given["Exer"]) and (draw != "NA").all().all()
    for target, pattern in (("only", r"yes"), ("Month", r"\d+"), ("Exer", r"None|Some|Freq")):
        assert run("predict", tmp_path / "run", source, "--target", target, "-o", tmp_path / "p.csv", "--quiet") == 0
        assert pd.read_csv(tmp_path / "p.csv", keep_default_na=False, dtype=str)[target].str.fullmatch(pattern).all()


# (name, file content, command line after the file, message): each exits 2 with one line naming the file, column or option.
BAD_FILES = [
    ("repeated column", "a,b,a\n1,2,3\n2,3,4\n", ["impute", "--fit"], r"bad\.csv: columns \['a'\] appear more than once"),
    ("ISO date column", "Date,x\n1973-05-01,1\n1973-05-02,\n1973-05-03,3\n", ["impute", "--fit"],
     r"column 'Date' holds dates such as '1973-05-01'"),
    ("NA without --na-values", "Ozone,x\n41,1\nNA,2\n12,3\n", ["impute", "--fit"], r"column 'Ozone'.*--na-values NA"),
    ("None in a numeric column with --na-values NA", "Ozone,x\n41,1\nNone,2\nNA,3\n", ["impute", "--fit", "--na-values", "NA"],
     r"column 'Ozone'.*\['None'\].*--na-values None"),
    ("repeated column for predict", "a,b,a\n1,2,3\n", ["predict", "RUN", "--target", "a"], r"bad\.csv: columns \['a'\]"),
    ("repeated column for evaluate", "a,a\n1,2\n", ["evaluate", "RUN"], r"bad\.csv: columns \['a'\] appear"),
    ("repeated column for impute", "x,x\n1,2\n", ["impute", "RUN"], r"bad\.csv: columns \['x'\] appear"),
    ("data.na_values as text", "a,b\n1,2\n", ["fit", {"na_values": "NA"}], r"data\.na_values: expected a list.*got 'NA'"),
    ("data.na_values null", "a,b\n1,2\n", ["fit", {"na_values": [None]}], r"data\.na_values: expected a list.*\[None\]"),
    ("a repeated column in a fit", "a,b,b\n1,2,3\n2,3,4\n", ["fit", {}], r"bad\.csv: columns \['b'\] appear"),
]


@pytest.mark.parametrize("content, argv, message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_files_are_one_line_naming_the_file_column_or_option(tmp_path, table_run, capsys, content, argv, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    command, *rest = argv
    if command == "fit":
        argv = ["fit", write_config(tmp_path / "c.yaml", "bad.csv", **rest[0]), "--out", tmp_path / "run"]
    elif rest[:1] == ["--fit"]:
        argv = [command, "--fit", bad, "-o", tmp_path / "out.csv", *rest[1:]]
    else:
        argv = [command, table_run[0] / "run", bad, *rest[1:]]
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and __import__("re").search(message, err), err
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "run").exists()


# --- every failure: one line, exit code 2, the file, column or option named, nothing written ---------

def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _transform(change):
    return lambda root: _edit_json(root / "run" / "model" / "transform.json", change)


def _scale(value):
    return _transform(lambda t: t["scale"].__setitem__(0, ["a", value]))


def _config(**sections):
    """A setup writing c.yaml: the module's run config with ``sections`` merged in."""
    def setup(root):
        raw = yaml.safe_load((root / "run.yaml").read_text())
        for key, value in sections.items():
            raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
        (root / "c.yaml").write_text(yaml.safe_dump(raw))
    return setup


def _nan_weights(root):
    from safetensors.torch import load_file, save_file

    path = root / "run" / "model" / "model.safetensors"
    state = load_file(str(path))
    state[sorted(state)[0]][0] = float("nan")
    save_file(state, str(path))


def _write(name, text):
    return lambda root: (root / name).write_text(text)


def _csv(name, change):
    return lambda root: change(read_frame(root / "train.csv")).to_csv(root / name, index=False)


FAILURES = [
    # options refused by the parser
    ("--draws -1", None, ["impute", "run", "train.csv", "--draws", "-1"], r"argument --draws: must be an integer >= 1, got -1"),
    ("--draws 0", None, ["impute", "run", "train.csv", "--draws", "0"], r"--draws: must be an integer >= 1"),
    ("--samples -1", None, ["impute", "run", "train.csv", "--samples", "-1"], r"--samples: must be an integer >= 0"),
    ("--steps 0", None, ["impute", "--fit", "train.csv", "--steps", "0"], r"--steps: must be an integer >= 1"),
    ("--mask-rate 1.5", None, ["evaluate", "run", "train.csv", "--mask-rate", "1.5"], r"--mask-rate: must be a fraction"),
    ("--mechanism", None, ["evaluate", "run", "train.csv", "--mechanism", "mcr"], r"--mechanism: invalid choice: 'mcr'"),
    ("--epochs 0", None, ["demo", "--epochs", "0"], r"--epochs: must be an integer >= 1, got 0"),
    # outputs that cannot be written, refused before any work
    ("-o under a file", None, ["impute", "run", "train.csv", "-o", "train.csv/out.csv"],
     r"-o train\.csv/out\.csv: train\.csv is a file, not a folder"),
    ("--fit -o under a file", None, ["impute", "--fit", "train.csv", "-o", "train.csv/out.csv"], r"-o train\.csv/out\.csv"),
    ("-o of an unknown type", None, ["impute", "run", "train.csv", "-o", "out.txt"], r"-o out\.txt: unknown file type '\.txt'"),
    ("-o a folder", lambda root: (root / "out.csv").mkdir(), ["impute", "run", "train.csv", "-o", "out.csv"],
     r"-o out\.csv: that is a folder"),
    ("--save a file", None, ["impute", "--fit", "train.csv", "--save", "train.csv"], r"--save train\.csv: that is a file"),
    ("predict -o under a file", None, ["predict", "run", "train.csv", "--target", "kind", "-o", "train.csv/k.csv"],
     r"-o train\.csv/k\.csv"),
    ("evaluate --json under a file", None, ["evaluate", "run", "train.csv", "--json", "train.csv/s.json"],
     r"--json train\.csv/s\.json"),
    ("fit --out a file", None, ["fit", "run.yaml", "--out", "train.csv"], r"--out train\.csv: that is a file"),
    # input files
    ("an empty CSV", _write("empty.csv", ""), ["impute", "--fit", "empty.csv"], r"empty\.csv: the file is empty"),
    ("a CSV of ids only", _csv("ids.csv", lambda f: f[["id"]]), ["impute", "--fit", "ids.csv"],
     r"ids\.csv: no columns to fill; it has only \['id'\]"),
    ("a stray number in a text column", _csv("stray.csv", lambda f: f.assign(kind=f["kind"].where(f.index != 3, "7"))),
     ["impute", "--fit", "stray.csv"],
     r"^(?!.*na_values).*stray\.csv: column 'kind' holds text categories such as \['high', 'low'\], .*\['7'\] \(rows \[3\]\)"),
    ("a file of no rows", _csv("none.csv", lambda f: f.iloc[:0]), ["impute", "run", "none.csv"],
     r"none\.csv: empty data: no samples"),
    ("not an NPZ file", _write("x.npz", "text"), ["impute", "--fit", "x.npz"], r"x\.npz: not an NPZ file"),
    ("a file without a model column", _csv("no_a.csv", lambda f: f.drop(columns="a")),
     ["impute", "run", "no_a.csv"], r"no_a\.csv: the imputer's columns \['a'\] are missing"),
    # saved models, transforms and imputers that are damaged
    ("a zero scale in transform.json", _scale(0.0), ["impute", "run", "train.csv"],
     r"transform\.json is damaged.*column 'a': min .* and scale 0\.0 must be finite numbers, the scale > 0"),
    ("a negative scale in transform.json", _scale(-2.0), ["predict", "run", "train.csv", "--target", "kind"],
     r"transform\.json.*column 'a'.*scale -2\.0"),
    ("a NaN scale in transform.json", _scale(float("nan")), ["info", "run"], r"transform\.json.*column 'a'.*scale nan"),
    ("a column missing from transform.json", _transform(lambda t: t["columns"].remove("b")),
     ["impute", "run", "train.csv"], r"transform\.json.*numeric columns are \['a', 'c', 'd'\]"),
    ("no categories in transform.json", _transform(lambda t: t["categories"].__setitem__(0, ["kind", []])),
     ["impute", "run", "train.csv"], r"transform\.json.*column 'kind': categories \[\]"),
    ("transform.json of another model", _transform(lambda t: t["schema"][0].update(shape=[2])),
     ["evaluate", "run", "train.csv"], r"transform\.json.*modality 'a' of columns \['a'\] must be a numeric modality of shape"),
    ("NaN weights", _nan_weights, ["predict", "run", "train.csv", "--target", "kind"],
     r"model\.safetensors: weights \['\S+'\] hold NaN or infinite values"),
    ("imputer.json not an object", _write("imputer/imputer.json", "[1, 2]"), ["impute", "imputer", "numbers.csv"],
     r"imputer/imputer\.json is corrupt: expected a JSON object"),
    ("imputer.json with options as a list", lambda root: _edit_json(root / "imputer" / "imputer.json",
                                                                   lambda d: d.update(params=[1])),
     ["impute", "imputer", "numbers.csv"], r"imputer/imputer\.json is corrupt"),
    ("imputer.json not JSON", _write("imputer/imputer.json", "{"), ["impute", "imputer", "numbers.csv"],
     r"imputer/imputer\.json is corrupt: JSONDecodeError"),
    # run configs: every section checked before training, the run folder untouched
    ("trainer.lr as text", _config(trainer={"lr": "fast"}), ["fit", "c.yaml", "--out", "run"], r"trainer\.lr: expected float"),
    ("evaluate.mask_rate 1.5", _config(evaluate={"mask_rate": 1.5}), ["fit", "c.yaml", "--out", "run"],
     r"evaluate\.mask_rate: a fraction in \[0, 1\].*got 1\.5"),
    ("evaluate.samples -1", _config(evaluate={"samples": -1}), ["fit", "c.yaml", "--out", "new"], r"evaluate\.samples: .*got -1"),
    ("a missing data.test", _config(data={"test": "absent.csv"}), ["fit", "c.yaml", "--out", "run"],
     r"data\.test: no such file: .*absent\.csv"),
    ("a data.test without a column", _config(data={"test": "no_c.csv"}), ["fit", "c.yaml", "--out", "new"],
     r"data\.test: .*no_c\.csv: the table lacks columns \['c'\]"),
    ("data.train of ids only", _config(data={"train": "ids.csv"}), ["fit", "c.yaml", "--out", "new"],
     r"data\.train: .*ids\.csv: no columns to model: the data has only \['id'\]"),
    ("model.options out of range", _config(model={"options": {"latent_dim": -1}}), ["fit", "c.yaml", "--out", "run"],
     r"model\.options: MIWAEConfig: latent_dim must be >= 1, got -1"),
    ("an unknown schema.numeric", _config(schema={"numeric": "poisson"}), ["fit", "c.yaml", "--out", "run"],
     r"schema\.numeric: unknown likelihood 'poisson'"),
    ("a data.time the file lacks", _config(data={"time": "when"}, model={"name": "mdmm", "options": {}}),
     ["fit", "c.yaml", "--out", "new"], r"data\.train: .*train\.csv: sequences in long format need .*data\.time 'when'"),
    ("--id of no column", None, ["impute", "--fit", "train.csv", "--id", "key"], r"--id 'key': train\.csv has no such column"),
    ("a resume with another lr", _config(trainer={"lr": 0.01}), ["fit", "c.yaml", "--out", "run", "--resume"],
     r"cannot resume from run/checkpoint\.pt with changed options \(lr: 0\.001 in the checkpoint, 0\.01 now\)"),
    ("a resume with another model", _config(model={"options": {"latent_dim": 3}}), ["fit", "c.yaml", "--out", "run", "--resume"],
     r"cannot resume from run/checkpoint\.pt: it does not fit this model"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A run folder (run/), a saved Gaussian imputer (imputer/) and the files they were fitted on."""
    root = tmp_path_factory.mktemp("files")
    frame, _ = clusters(n=80)
    frame.to_csv(root / "train.csv", index=False)
    frame.drop(columns="kind").to_csv(root / "numbers.csv", index=False)
    frame[["id"]].to_csv(root / "ids.csv", index=False)
    frame.drop(columns="c").to_csv(root / "no_c.csv", index=False)
    trainer = {"epochs": 2, "batch_size": 32, "progress": False}
    assert run("fit", write_config(root / "run.yaml", "train.csv", trainer=trainer), "--out", root / "run", "--quiet") == 0
    assert run("impute", "--fit", root / "numbers.csv", "-o", root / "numbers_filled.csv", "--model", "gaussian",
               "--save", root / "imputer", "--quiet") == 0
    return root


@pytest.mark.parametrize("setup, argv, message", [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES])
def test_every_failure_is_one_line_with_exit_code_2_and_leaves_every_file_as_it_was(
        files, tmp_path, monkeypatch, capsys, setup, argv, message):
    root = tmp_path / "work"
    shutil.copytree(files, root)
    monkeypatch.chdir(root)
    if setup:
        setup(root)
    before = folder_hash(root)
    assert run(*argv, "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"polymodal {argv[0]}: error: "), err
    assert re.search(message, err) and "unexpected" not in err, err
    assert folder_hash(root) == before  # byte for byte: every file, and no file added or removed


def test_an_unexpected_fault_is_one_line_naming_its_kind(monkeypatch, capsys):
    from polymodal import commands

    monkeypatch.setattr(commands, "info", lambda args: [][0])
    assert run("info", "anywhere") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "IndexError: list index out of range" in err and "--debug" in err
    with pytest.raises(IndexError):
        main(["info", "anywhere", "--debug"])


def test_a_non_finite_loss_is_one_line_and_leaves_only_the_config(tmp_path, capsys):
    frame, _ = clusters(n=40)
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = write_config(tmp_path / "c.yaml", "t.csv", trainer={"epochs": 2, "progress": False})
    raw = yaml.safe_load(config.read_text())
    raw["schema"] = {"numeric": {"name": "gaussian", "scale": 1e-30}}  # each squared error overflows float32
    config.write_text(yaml.safe_dump(raw))
    assert run("fit", config, "--out", tmp_path / "run", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-finite loss" in err and "epoch 1, step 1" in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("spelling, value", [("1e-3", 1e-3), ("1E-3", 1e-3), ("1.0e-3", 1e-3), ("5e+2", 500.0),
                                             ("2.5e2", 250.0), (".5", 0.5), ("0.001", 1e-3), ("3", 3)])
def test_yaml_takes_every_float_spelling(tmp_path, spelling, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"data: {{train: t.csv}}\ntrainer: {{lr: {spelling}}}\n")
    config = load_config(path)
    assert config.trainer["lr"] == value and type(config.trainer["lr"]) is type(value)


def test_version(capsys):
    assert run("--version") == 0
    assert capsys.readouterr().out.strip() == f"polymodal {polymodal.__version__}"


def test_impute_fit_without_an_output_writes_beside_the_input(tmp_path, capsys):
    frame, _ = clusters(n=60)
    frame.drop(columns="kind").to_csv(tmp_path / "x.csv", index=False)
    assert run("impute", "--fit", tmp_path / "x.csv", "--model", "gaussian", "--quiet") == 0
    filled = read_frame(tmp_path / "x.imputed.csv")
    assert filled.shape == (60, 5) and not filled.isna().any().any()
    assert "x.imputed.csv" in capsys.readouterr().out



WITHOUT_DEV_TOOLS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytest", "hypothesis", "ruff", "aeon", "numba", "pyarrow"):
            raise ImportError(f"{name} is a development tool")
sys.meta_path.insert(0, Block())
from polymodal.cli import main
main(sys.argv[1:])
"""


def test_the_demo_needs_none_of_the_development_tools(tmp_path):
    result = subprocess.run([sys.executable, "-c", WITHOUT_DEV_TOOLS, "demo", "--epochs", "1", "--out", str(tmp_path / "d"),
                             "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "d" / "report.html").is_file() and "label accuracy from images alone" in result.stdout
