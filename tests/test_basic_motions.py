import builtins

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.datasets import ACTIVITIES


@pytest.fixture(scope="module")
def motions():
    return pm.load_basic_motions()


def test_shapes_split_and_labels(motions):
    train, validation, test = motions
    assert train.schema.names == ["accel", "gyro", "activity"]
    assert [len(b.values["accel"]) for b in motions] == [32, 8, 40]
    for batch in motions:
        assert batch.values["accel"].shape[1:] == (100, 3) and batch.values["gyro"].shape[1:] == (100, 3)
        assert bool(batch.presence().all())
    assert np.bincount(validation.values["activity"].long().numpy(), minlength=4).tolist() == [2, 2, 2, 2]
    assert np.bincount(test.values["activity"].long().numpy(), minlength=4).tolist() == [10, 10, 10, 10]
    assert len(ACTIVITIES) == 4


def test_standardised_on_the_training_sequences(motions):
    train, _, test = motions
    both = torch.cat([train.values["accel"], train.values["gyro"]], -1)
    torch.testing.assert_close(both.mean((0, 1)), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(both.std((0, 1), correction=0), torch.ones(6), atol=1e-4, rtol=0)
    assert float(test.values["accel"].abs().mean()) > 0.1  # scaled with the training statistics, not its own


def test_label_per_step_or_none_and_the_validation_seed():
    train, _, _ = pm.load_basic_motions(label="step")
    assert train.schema["activity"].sequential and train.values["activity"].shape == (32, 100)
    assert bool((train.values["activity"] == train.values["activity"][:, :1]).all())
    unlabelled, none, _ = pm.load_basic_motions(label=None, validation=0)
    assert unlabelled.schema.names == ["accel", "gyro"] and none is None and len(unlabelled.values["accel"]) == 40
    other, _, _ = pm.load_basic_motions(seed=1)
    assert not torch.equal(other.values["accel"], pm.load_basic_motions()[0].values["accel"])
    with pytest.raises(ValueError, match="label must be one of"):
        pm.load_basic_motions(label="steps")


def test_without_aeon_the_error_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_aeon(name, *args, **kwargs):
        if name.startswith("aeon"):
            raise ImportError("No module named 'aeon'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_aeon)
    with pytest.raises(ImportError, match=r"polymodal\[data\]"):
        pm.load_basic_motions()


def test_a_resampled_split_is_stratified_and_depends_on_its_seed():
    train, _, test = pm.load_basic_motions(validation=0, split=3)
    for batch in (train, test):
        assert torch.bincount(batch.values["activity"].long(), minlength=4).tolist() == [10] * 4
    assert not torch.equal(train.values["accel"], pm.load_basic_motions(validation=0)[0].values["accel"])
    assert not torch.equal(test.values["accel"], pm.load_basic_motions(validation=0, split=4)[2].values["accel"])
    assert torch.equal(test.values["gyro"], pm.load_basic_motions(validation=0, split=3)[2].values["gyro"])
