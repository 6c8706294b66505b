"""JMVAE, MVTCAE and MMVAE+ on data: label from image on the digits (slow) and a ``polymodal fit``
of a run config naming each. Their objectives are checked term by term in their own test
files; what every model must do is in tests/test_contract.py."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import polymodal as pm
from polymodal.cli import main

ON_DIGITS = {
    "jmvae": lambda s: pm.JMVAE(s, latent_dim=8, hidden=(64,), weights={"label": 20.0}),
    "mvtcae": lambda s: pm.MVTCAE(s, latent_dim=8, hidden=(64,), weights={"label": 20.0}),
    "mmvaeplus": lambda s: pm.MMVAEPlus(s, latent_dim=8, private_dim=4, hidden=(64,), samples=4, weights={"label": 20.0}),
}
IN_A_CONFIG = {
    "jmvae": ({"latent_dim": 2, "hidden": [16], "joint_hidden": [16], "alpha": 0.5}, "alpha", 0.5),
    "mvtcae": ({"latent_dim": 2, "hidden": [16], "alpha": 0.5}, "alpha", 0.5),
    "mmvaeplus": ({"latent_dim": 2, "private_dim": 1, "hidden": [16], "samples": 2}, "samples", 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ON_DIGITS))
def test_predicts_labels_from_images_on_partially_paired_digits(name):
    train, test = pm.load_digits(paired=0.5)
    torch.manual_seed(0)
    model = ON_DIGITS[name](train.schema)
    pm.Trainer(model, epochs=30, batch_size=64, progress=False).fit(train)
    assert pm.metrics.accuracy(model.predict(test, "label", ["image"]), test.values["label"]) > 0.6  # chance: 0.1


@pytest.mark.parametrize("name", sorted(IN_A_CONFIG))
def test_fit_from_a_run_config(name, tmp_path):
    """``polymodal fit`` on a small table with holes (two classes over four columns) saves the named model."""
    options, option, value = IN_A_CONFIG[name]
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 160)
    frame = pd.DataFrame(rng.normal(size=(160, 4)) * 0.5 + 3.0 * label[:, None], columns=["a", "b", "c", "d"])
    frame["kind"] = np.where(label == 1, "high", "low")
    frame.mask(rng.random(frame.shape) < 0.15).to_csv(tmp_path / "train.csv", index_label="id")
    config = {"data": {"train": "train.csv"}, "model": {"name": name, "options": options},
              "trainer": {"epochs": 3, "batch_size": 32, "progress": False}, "evaluate": {"samples": 5}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    main(["fit", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), "--quiet"])
    assert (tmp_path / "run" / "scores.json").is_file()
    model = pm.load(tmp_path / "run" / "model")
    assert model.name == name and getattr(model.config, option) == value
