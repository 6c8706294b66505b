import json

import pytest
import torch

import polymodal as pm
from polymodal.cli import main


def data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (2,))])
    a = torch.randn(n, 3, generator=g)
    return pm.Batch.from_data(schema, {"a": a, "b": a[:, :2] * 2 + 0.1 * torch.randn(n, 2, generator=g)})


def test_kl_warmup_is_linear_per_step_then_one():
    trainer = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), kl_warmup=2, progress=False)
    betas = [trainer.beta(step, steps_per_epoch=5) for step in range(12)]
    assert betas[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert betas[9:] == [1.0, 1.0, 1.0]


def test_fit_is_reproducible_with_a_seed():
    states = []
    for _ in range(2):
        torch.manual_seed(0)  # same initial weights
        model = pm.MVAE(data().schema, latent_dim=2, hidden=(8,))
        pm.Trainer(model, epochs=2, batch_size=32, seed=7, progress=False).fit(data())
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_training_lowers_the_validation_loss_and_history_is_complete():
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(16,))
    history = pm.Trainer(model, epochs=15, batch_size=32, progress=False).fit(data(), data(64, seed=1))
    assert [h["epoch"] for h in history] == list(range(1, 16))
    assert {"loss", "beta", "seconds", "valid_loss", "valid_recon", "valid_kl"} <= set(history[0])
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]


def test_early_stopping_restores_the_best_weights():
    train, valid = data(), data(64, seed=1)
    model = pm.MVAE(train.schema, latent_dim=2, hidden=(16,))
    trainer = pm.Trainer(model, epochs=200, batch_size=32, lr=3e-2, patience=2, progress=False)
    history = trainer.fit(train, valid)
    assert len(history) < 200
    best = min(h["valid_loss"] for h in history)
    torch.manual_seed(0)
    again = trainer.evaluate(valid)["loss"]
    assert again == pytest.approx(best, rel=0.05)  # the loss samples z, hence the tolerance
    assert history[-1]["valid_loss"] > best


def test_bad_training_configs_raise():
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(8,))
    with pytest.raises(pm.ConfigError, match="epoch"):
        pm.Trainer(model, epoch=3)
    with pytest.raises(pm.ConfigError, match="patience"):
        pm.Trainer(model, patience=2, progress=False).fit(data())
    with pytest.raises(pm.ConfigError, match="device"):
        pm.Trainer(model, device="tpu")


def test_demo_writes_results_and_plots(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path / "run"), "--epochs", "2"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0.0 <= results["label_accuracy_from_image"] <= 1.0
    assert (tmp_path / "run" / "digits.png").stat().st_size > 1000
    assert (tmp_path / "run" / "loss.png").exists()
    assert "written to" in capsys.readouterr().out
