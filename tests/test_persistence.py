import json

import pytest
import torch

import polymodal as pm
from polymodal.files import atomic_write
from polymodal.persistence import ModelFileError


def digits_model():
    train, test = pm.load_digits()
    torch.manual_seed(0)
    model = pm.MVAE(train.schema, latent_dim=4, hidden=(32,), weights={"label": 5.0}, subsets=0, cross=True)
    pm.Trainer(model, epochs=1, batch_size=128, progress=False).fit(train)
    return model, test.select(slice(0, 40))


def test_round_trip_gives_identical_outputs(tmp_path):
    model, test = digits_model()
    model.save(tmp_path / "m")
    loaded = pm.load(tmp_path / "m")
    assert type(loaded) is pm.MVAE and loaded.config == model.config and loaded.schema == model.schema
    torch.testing.assert_close(loaded.embed(test), model.embed(test), rtol=0, atol=0)
    assert torch.equal(loaded.predict(test, "label", ["image"]), model.predict(test, "label", ["image"]))
    torch.manual_seed(5)
    a = model.loss(test).loss
    torch.manual_seed(5)
    assert torch.equal(loaded.loss(test).loss, a)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model"] == "mvae" and saved["polymodal"] == pm.__version__ and saved["config"]["weights"] == {"label": 5.0}


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("good")

    def broken(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda d: (d / "config.json").write_text("{not json"), "corrupt"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00garbage"), "corrupt"),
        (lambda d: _edit(d, model="nope"), "unknown model 'nope'"),
        (lambda d: _edit(d, format=99), "format 99"),
        (lambda d: _edit(d, config={"latent_dim": 5, "hidden": [32], "weights": {"label": 5.0}, "subsets": 0}), "do not fit"),
        (lambda d: _edit(d, config={"latent_dimension": 4}), "latent_dimension"),
    ],
)
def test_bad_folders_raise_clear_errors(tmp_path, damage, message):
    model, _ = digits_model()
    model.save(tmp_path / "m")
    damage(tmp_path / "m")
    with pytest.raises((ModelFileError, pm.ConfigError), match=message):
        pm.load(tmp_path / "m")


def test_missing_folder(tmp_path):
    with pytest.raises(ModelFileError, match="not a folder"):
        pm.load(tmp_path / "absent")


def _edit(folder, **changes):
    saved = json.loads((folder / "config.json").read_text())
    saved.update(changes)
    (folder / "config.json").write_text(json.dumps(saved))
