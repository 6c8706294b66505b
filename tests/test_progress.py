"""Progress bars say what they count, and training says when and why it stopped early."""

import numpy as np
import torch

import polymodal as pm
from polymodal.progress import chunked


def data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (2,))])
    a = torch.randn(n, 3, generator=g)
    return pm.Batch.from_data(schema, {"a": a, "b": a[:, :2] * 2 + 0.1 * torch.randn(n, 2, generator=g)})


def worsening():
    """A validation score that only grows: patience runs out after the first validation."""
    calls = []

    def score(model):
        calls.append(1)
        return float(len(calls))

    return score


def test_early_stopping_says_when_and_why(capsys):
    trainer = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), epochs=30, batch_size=64, patience=3,
                         progress=True)
    history = trainer.fit(data(), score=worsening())
    err = capsys.readouterr().err
    assert len(history) == 4
    assert trainer.stopped_early == ("mvae: stopped early at step 4 of 30: the validation score has not improved on 1 "
                                     "for 3 validations (patience); the best validation's weights are kept")
    assert trainer.stopped_early in err


def test_a_full_batch_bar_counts_steps_and_a_minibatch_bar_epochs(capsys):
    pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), epochs=2, batch_size=64, progress=True).fit(data())
    err = capsys.readouterr().err
    assert "step/s" in err or "s/step" in err
    assert "it/s" not in err and "s/it" not in err
    trainer = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), epochs=2, batch_size=16, progress=True)
    trainer.fit(data())
    err = capsys.readouterr().err
    assert ("epoch/s" in err or "s/epoch" in err) and trainer.stopped_early is None


def test_training_without_a_bar_logs_the_early_stop(caplog):
    trainer = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), epochs=30, batch_size=16, patience=2,
                         progress=False)
    with caplog.at_level("INFO", logger="polymodal"):
        trainer.fit(data(), score=worsening())
    assert "stopped early at epoch 3 of 30" in caplog.text


def test_the_gaussian_mixture_shows_its_em_steps_only_when_asked(capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    pm.GaussianMixture(progress=True).fit(x)
    err = capsys.readouterr().err
    assert "EM (1 components)" in err and "step" in err and "it/s" not in err
    pm.GaussianMixture().fit(x)
    assert capsys.readouterr().err == ""


def test_chunked_bars_count_samples(capsys):
    assert chunked(lambda rows: rows.stop - rows.start, 600, size=256, progress=True, desc="impute") == [256, 256, 88]
    err = capsys.readouterr().err
    assert "impute" in err and "sample" in err and "it/s" not in err
