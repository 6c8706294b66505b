"""report.html as a reader sees it: rendered by headless Chromium, images and all."""

import numpy as np
import pytest
import torch
import yaml
from browser import CHROMIUM, chromium
from matplotlib.image import imread

import polymodal as pm
from polymodal.evaluation import evaluate
from polymodal.report import write_report
from polymodal.run import fit, parse_config


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
