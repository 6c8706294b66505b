"""report.html as a reader sees it: rendered by headless Chromium, images and all."""

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.image import imread

import polymodal as pm
from polymodal.evaluation import FEW, Evaluation, evaluate, hold_out
from polymodal.report import Units, missingness_figure, scatter_figure, sequence_figure, write_report
from polymodal.run import fit, parse_config
from polymodal.tables import SequenceSchema, TableSchema

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium(tmp_path, *args):
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def table_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 3))
    frame = pm.datasets.files.pd.DataFrame({"a": x[:, 0], "b": x[:, 0] + 0.1 * x[:, 1], "c": x[:, 2]})
    frame = frame.mask(rng.random(frame.shape) < 0.2)
    frame["group"] = np.where(x[:, 0] > 0, "up", "down")
    frame.to_csv(root / "data.csv", index=False)
    raw = {"data": {"train": "data.csv"}, "model": {"name": "miwae"}, "trainer": {"epochs": 5, "progress": False},
           "evaluate": {"samples": 20}}
    fit(parse_config(raw, root), root / "run", progress=False)
    return root / "run" / "report.html"


def test_report_is_one_self_contained_page(table_report):
    page = table_report.read_text()
    assert page.count('src="data:image/png;base64,') == 3  # loss curves, scatter, missingness pattern
    assert "src=\"http" not in page and "<link" not in page and "<script" not in page
    for part in ("Training", "Scores on hidden entries", "Imputed against true values", "Missingness pattern", "config.yaml"):
        assert part in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (.ci/run installs it)")
def test_chromium_renders_the_report_with_its_images(table_report, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", table_report.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    colour = (pixels.max(-1) - pixels.min(-1)) > 0.25  # plot lines, points and the pattern; text is grey
    assert (pixels < 0.9).any(-1).mean() > 0.02 and colour.sum() > 5000
    dom = chromium(tmp_path, "--dump-dom", table_report.as_uri()).stdout
    assert dom.count("<img") == 3 and "Scores on hidden entries" in dom


def test_image_data_gets_reconstructions_and_cross_generations(tmp_path):
    train, test = pm.load_digits()
    torch.manual_seed(0)
    model = pm.MVAE(train.schema, latent_dim=4, hidden=(32,), cross=True)
    pm.Trainer(model, epochs=1, progress=False).fit(train)
    model.save(tmp_path / "run" / "model")
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"model": "mvae on digits"}))
    evaluation = evaluate(model, test.select(slice(0, 50)), samples=10)
    page = write_report(tmp_path / "run", evaluation).read_text()
    assert "Images: reconstructions and cross generation" in page and "Missingness pattern" in page
    assert page.count("data:image/png;base64,") == 2 and 0 < evaluation.scores["image"]["nrmse"] < 10


def cells(page, css):
    """Per column of the report's per-column table, the text of its cells of class ``css``."""
    return dict(re.findall(rf"<tr data-column='([^']*)'>.*?<td class='{css}'>([^<]*)</td>", page))


def test_every_column_has_its_scores_counts_and_baselines(table_report):
    page = table_report.read_text()
    scores = json.loads((table_report.parent / "scores.json").read_text())
    counts = cells(page, "entries")
    assert set(counts) == {"a", "b", "c", "group"}
    assert {c: int(n) for c, n in counts.items()} == {c: s["entries"] for c, s in scores.items()}
    notes = cells(page, "note")
    assert all(("too few" in notes[c]) == (scores[c]["entries"] < FEW) for c in counts)
    assert all(("worse than" in notes[c]) == bool(scores[c]["worse_than"]) for c in counts)
    assert "<th>mean</th>" in page and "<th>mode</th>" in page


def test_categorical_columns_get_a_confusion_table(table_report):
    page = table_report.read_text()
    scores = json.loads((table_report.parent / "scores.json").read_text())
    table = re.search(r"<table class='confusion' data-column='group'>(.*?)</table>", page).group(1)
    assert re.findall(r"<th>(up|down)</th>", table) == ["down", "up", "down", "up"]
    counts = [int(n) for n in re.findall(r"<td class='[a-z]*'>(\d+)</td>", table)]
    assert len(counts) == 4 and sum(counts) == scores["group"]["entries"]
    assert counts[0] + counts[3] == round(scores["group"]["accuracy"] * scores["group"]["entries"])


def hidden_half(truth, seed=0):
    return hold_out(truth, 0.5, seed=seed)


def test_scatter_plots_show_every_column_in_its_units():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 14)) * np.arange(1, 15) * 100 + 1000, columns=[f"c{j}" for j in range(14)])

    tables = TableSchema().fit(frame)
    truth = tables.transform(frame)
    held = hidden_half(truth)
    fig = scatter_figure(Evaluation(truth, held, truth, {}), Units(tables))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split()[0] for ax in panels] == list(frame.columns)  # all 14, not the first 12
    for ax, column in zip(panels, frame.columns):
        hidden = ~held.observed[column].numpy()
        np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], frame[column].to_numpy()[hidden], atol=1e-3)
        assert ax.get_title() == f"{column} ({hidden.sum()} hidden)"


def test_sequences_show_every_feature_and_padding_is_not_missing():
    rows = []
    for i, length in enumerate((8, 5, 3)):  # sequences 1 and 2 are padded after their end
        t = np.arange(length)
        rows.append(pd.DataFrame({"id": i, "time": t, "x": 10.0 * t, "y": -5.0 * t + i, "z": 100 + t ** 2}))
    frame = pd.concat(rows, ignore_index=True)
    frame.loc[3, "y"] = np.nan  # one cell missing inside sequence 0
    schema = SequenceSchema(groups={"pos": ["x", "y"]}).fit(frame)
    truth = schema.transform(frame)
    held = hidden_half(truth)
    evaluation = Evaluation(truth, held, truth, {})
    fig = sequence_figure(evaluation, n=3, units=Units(schema))
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["x", "y", "z"]
    truth_line = fig.axes[3 * 2 + 1].lines[0]  # z of sequence 1, in its units
    assert truth_line.get_ydata().tolist() == pytest.approx([100 + s**2 for s in range(5)])
    state = missingness_figure(evaluation, units=Units(schema)).axes[0].images[0].get_array()
    assert state.shape == (3 * 8, 3)
    assert (state[8 + 5 : 16] == 0).all() and (state[16 + 3 :] == 0).all()  # padding: its own colour
    assert (state == 1).sum() == 1 and state[3, 1] == 1  # the one cell missing in the data
