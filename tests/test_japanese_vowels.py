import sys

import numpy as np
import pytest
import torch

import polymodal as pm


@pytest.fixture(scope="module")
def vowels():
    return pm.load_japanese_vowels(label="step", validation=27)


def test_variable_length_utterances_are_padded_with_unobserved_steps(vowels):
    train, validation, test = vowels
    assert train.schema.names == ["lpc_low", "lpc_high", "speaker"]
    assert [len(b) for b in vowels] == [243, 27, 370]
    lengths = test.observed["lpc_low"].all(-1).sum(1)
    assert int(lengths.min()) == 7 and int(lengths.max()) == 29 and test.values["lpc_low"].shape[1:] == (29, 6)
    for batch in vowels:
        seen = batch.observed["lpc_low"].all(-1)
        assert bool((seen == batch.observed["lpc_high"].all(-1)).all() and (seen == batch.observed["speaker"]).all())
        assert bool((seen.long().diff(dim=1) <= 0).all())  # observed up to the last frame, then padding
    assert np.bincount(validation.values["speaker"][:, 0].numpy(), minlength=9).tolist() == [3] * 9


def test_standardised_on_the_training_frames(vowels):
    train = vowels[0]
    seen = train.observed["lpc_low"].all(-1)
    frames = torch.cat([train.values["lpc_low"], train.values["lpc_high"]], -1)[seen]
    torch.testing.assert_close(frames.mean(0), torch.zeros(12), atol=1e-4, rtol=0)
    torch.testing.assert_close(frames.std(0, correction=0), torch.ones(12), atol=1e-4, rtol=0)


def test_without_aeon_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aeon", None)
    with pytest.raises(ImportError, match=r"load_japanese_vowels needs the aeon package.*polymodal\[data\]"):
        pm.load_japanese_vowels()
