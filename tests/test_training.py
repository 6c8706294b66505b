import json
import shutil

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
    betas = [trainer.loss_weights(step, steps_per_epoch=5)["beta"] for step in range(12)]
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


def test_epochs_of_a_few_steps_walk_through_whole_passes_over_the_data():
    trainer = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), batch_size=10, epoch_steps=3, progress=False)
    orders = [trainer._order(96, epoch) for epoch in range(1, 8)]  # 7 epochs of 30 rows: 210 rows, 2.2 passes
    assert all(len(order) == 30 for order in orders)
    rows = torch.cat(orders)
    for start in (0, 96):
        assert sorted(rows[start : start + 96].tolist()) == list(range(96))  # each pass visits every row once
    history = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), epochs=4, batch_size=10, epoch_steps=3,
                         progress=False).fit(data())
    assert len(history) == 4


def test_training_lowers_the_validation_loss_and_history_is_complete():
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(16,))
    history = pm.Trainer(model, epochs=15, batch_size=32, kl_warmup=2, progress=False).fit(data(), data(64, seed=1))
    assert [h["epoch"] for h in history] == list(range(1, 16))
    assert {"loss", "beta", "lr", "seconds", "valid_loss", "valid_recon", "valid_kl"} <= set(history[0])
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]


def test_early_stopping_restores_the_best_weights():
    train, valid = data(), data(64, seed=1)
    model = pm.MVAE(train.schema, latent_dim=2, hidden=(16,))
    trainer = pm.Trainer(model, epochs=200, batch_size=32, lr=3e-2, patience=2, progress=False)
    history = trainer.fit(train, valid)
    assert len(history) < 200
    best = min(h["valid_loss"] for h in history)
    assert trainer.evaluate(valid)["loss"] == pytest.approx(best, rel=1e-6)
    assert history[-1]["valid_loss"] > best


def test_early_stopping_on_a_score_every_few_epochs_keeps_the_weights_of_the_best_score():
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(8,))
    given, seen = iter([3.0, 1.0, 2.0, 2.0, 2.0, 0.5]), []

    def score(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(given)

    history = pm.Trainer(model, epochs=40, batch_size=32, patience=3, valid_every=4, progress=False).fit(data(), score=score)
    assert [h["epoch"] for h in history if "valid_score" in h] == [4, 8, 12, 16, 20]
    assert len(history) == 20 and "valid_loss" not in history[0]
    for key, value in model.state_dict().items():
        assert torch.equal(value, seen[1][key]), key


def validated(trainer, losses):
    """``trainer`` whose validation losses are ``losses`` in turn, and the weights each saw."""
    given, seen = iter(losses), []

    def evaluate(valid):
        seen.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return {"loss": next(given)}

    trainer.evaluate = evaluate
    return seen


def test_a_validation_loss_far_above_its_best_warns_and_the_best_weights_are_kept_by_default():
    trainer = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), epochs=4, batch_size=32, progress=False)
    seen = validated(trainer, [1.1, 0.8, 20.0, 60.0])
    with pytest.warns(pm.training.DivergenceWarning, match=r"validation loss rose from its best, 0.8, to 20 in epoch 3"):
        trainer.fit(data(), data(16, seed=1))
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, seen[1][key]), key


def test_keep_best_false_keeps_the_last_weights_and_a_mild_rise_does_not_warn(recwarn):
    trainer = pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), epochs=3, batch_size=32, keep_best=False,
                         progress=False)
    seen = validated(trainer, [-50.0, -60.0, -20.0])  # 40 above the best: less than 10 times its magnitude
    trainer.fit(data(), data(16, seed=1))
    assert not any(issubclass(w.category, pm.training.DivergenceWarning) for w in recwarn)
    assert any(not torch.equal(seen[1][k], seen[2][k]) for k in seen[2])  # the best and the last weights differ
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, seen[2][key]), key


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
    assert (tmp_path / "run" / "loss.png").exists() and (tmp_path / "run" / "history.csv").exists()
    assert "written to" in capsys.readouterr().out
    main(["evaluate", str(tmp_path / "run" / "model")])
    assert f"{results['label_accuracy_from_image']:.3f}" in capsys.readouterr().out


def test_lr_schedule_steps_every_epoch():
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(8,))
    history = pm.Trainer(model, epochs=3, lr_schedule="exponential", lr_gamma=0.5, progress=False).fit(data())
    assert [h["lr"] for h in history] == pytest.approx([5e-4, 2.5e-4, 1.25e-4])


def test_clipping_bounds_the_gradient_norm_the_optimizer_sees(monkeypatch):
    seen = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    for clip in (None, 0.01):
        seen.clear()
        model = pm.MVAE(data().schema, latent_dim=2, hidden=(8,))
        pm.Trainer(model, epochs=1, batch_size=32, clip_grad=clip, progress=False).fit(data())
        if clip is None:
            assert max(seen) > 0.1
        else:
            assert max(seen) <= clip * (1 + 1e-5)


def test_validation_metrics_come_from_the_validation_data():
    train, shifted = data(), data(64, seed=1)
    shifted = shifted.with_observed({})  # same schema, different values
    shifted.values["a"] = shifted.values["a"] + 5.0
    model = pm.MVAE(train.schema, latent_dim=2, hidden=(16,))
    trainer = pm.Trainer(model, epochs=3, batch_size=32, progress=False)
    history = trainer.fit(train, shifted)
    assert history[-1]["valid_loss"] > 2 * history[-1]["loss"]
    assert trainer.evaluate(shifted)["loss"] == pytest.approx(history[-1]["valid_loss"])
    assert trainer.evaluate(train)["loss"] < history[-1]["valid_loss"] / 2


def fit(out, epochs, resume=False, **kwargs):
    torch.manual_seed(0)
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(16,))
    options = dict(epochs=epochs, batch_size=32, kl_warmup=3, lr_schedule="exponential", lr_gamma=0.9,
                   patience=10, out=str(out), progress=False)
    trainer = pm.Trainer(model, **{**options, **kwargs})
    history = trainer.fit(data(), data(32, seed=2), resume=resume)
    return model, history


def assert_same_weights(a, b):
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_resume_continues_exactly(tmp_path):
    straight, history = fit(tmp_path / "straight", 4)
    fit(tmp_path / "split", 2)
    resumed, resumed_history = fit(tmp_path / "split", 4, resume=True)
    assert_same_weights(straight, resumed)
    drop = ("seconds",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed_history] == [
        {k: v for k, v in h.items() if k not in drop} for h in history
    ]
    lines = (tmp_path / "split" / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,loss") and len(lines) == 5


def test_a_killed_run_resumes_exactly(tmp_path, monkeypatch):
    straight, _ = fit(tmp_path / "straight", 4)
    calls = {"n": 0}
    loss = pm.MVAE.loss

    def dying_loss(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:  # in the third epoch (each has 3 steps and 1 validation batch)
            raise KeyboardInterrupt
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(pm.MVAE, "loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "killed", 4)
    monkeypatch.setattr(pm.MVAE, "loss", loss)
    checkpoint = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    resumed, _ = fit(tmp_path / "killed", 4, resume=True)
    assert_same_weights(straight, resumed)


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    loss = pm.MVAE.loss

    def exploding_loss(self, *args, **kwargs):
        out = loss(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:  # second step of the second epoch
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(pm.MVAE, "loss", exploding_loss)
    with pytest.raises(pm.NonFiniteLossError, match="epoch 2, step 2 of 3"):
        fit(tmp_path, 4)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_schedules_pass_named_weights_and_unknown_names_raise():
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(8,))
    trainer = pm.Trainer(model, schedules={"beta": {"start": 0.5, "end": 1.0, "epochs": 1, "kind": "step"}}, progress=False)
    assert trainer.loss_weights(0, 10) == {"beta": 0.5} and trainer.loss_weights(10, 10) == {"beta": 1.0}
    with pytest.raises(pm.ConfigError, match="gamma"):
        pm.Trainer(model, schedules={"gamma": {"epochs": 2}})
    with pytest.raises(pm.ConfigError, match="epoch"):
        pm.Trainer(model, schedules={"beta": {"epoch": 2}})


def test_tensorboard_needs_the_package_or_writes_logs(tmp_path):
    model = pm.MVAE(data().schema, latent_dim=2, hidden=(8,))
    trainer = pm.Trainer(model, epochs=1, out=str(tmp_path), tensorboard=True, progress=False)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(pm.ConfigError, match="pip install tensorboard"):
            trainer.fit(data())
    else:
        trainer.fit(data())
        assert any((tmp_path / "tensorboard").iterdir())


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on CPU needs a C++ compiler")
def test_a_compiled_loss_trains_as_the_eager_one():
    """``compile=True`` runs the loss through torch.compile: the same trajectory up to float
    rounding (the KL warm-up's changing weight and the smaller last batch included), once the
    compiled code draws its noise from torch's generator as eager code does."""
    from torch._dynamo.utils import counters
    from torch._inductor import config
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (2,))])
    g = torch.Generator().manual_seed(0)
    batch = pm.Batch.from_data(schema, {"a": torch.randn(40, 3, generator=g), "b": torch.randn(40, 2, generator=g)})
    histories = []
    counters.clear()
    for compiled in (False, True):
        torch.manual_seed(0)
        model = pm.MVAE(schema, latent_dim=2, hidden=(8,))
        trainer = pm.Trainer(model, epochs=3, batch_size=16, kl_warmup=2, compile=compiled, progress=False)
        with config.patch(fallback_random=True):
            histories.append([record["loss"] for record in trainer.fit(batch)])
    assert histories[1] == pytest.approx(histories[0], rel=1e-4)
    assert counters["stats"]["unique_graphs"] >= 1  # the loss really went through torch.compile


def test_a_deferred_finiteness_check_names_the_first_bad_step(tmp_path, monkeypatch):
    calls = {"n": 0}
    loss = pm.MVAE.loss

    def exploding_loss(self, *args, **kwargs):
        out = loss(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:  # first step of the second epoch; checked only after the second
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(pm.MVAE, "loss", exploding_loss)
    with pytest.raises(pm.NonFiniteLossError, match=r"epoch 2, step 1 of 3: found at the check after step 2 \(check_every=2"):
        fit(tmp_path, 4, check_every=2)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_deferring_the_check_changes_nothing_else(tmp_path):
    a, history_a = fit(tmp_path / "a", 3)
    b, history_b = fit(tmp_path / "b", 3, check_every=5)
    assert_same_weights(a, b)
    assert [r["loss"] for r in history_a] == [r["loss"] for r in history_b]


@pytest.mark.parametrize("options, match", [
    ({"precision": "fp16"}, "precision"),
    ({"check_every": 0}, "check_every"),
])
def test_precision_and_check_every_are_checked(options, match):
    with pytest.raises(pm.ConfigError, match=match):
        pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), **options)


def test_bf16_on_a_cpu_without_native_bf16_is_refused(monkeypatch):
    monkeypatch.setattr(pm.training, "native_cpu_bf16", lambda: False)
    with pytest.raises(pm.ConfigError, match=r"precision='bf16' on a CPU needs native bfloat16 arithmetic \(AVX512-BF16"):
        pm.Trainer(pm.MVAE(data().schema, latent_dim=2, hidden=(8,)), precision="bf16")


def test_bf16_on_a_cpu_learns_what_fp32_learns(monkeypatch):
    """bf16 autocast runs on any CPU (slowly without native bf16, which the Trainer then refuses:
    the check is bypassed here so that the test runs everywhere)."""
    monkeypatch.setattr(pm.training, "native_cpu_bf16", lambda: True)
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = pm.MVAE(data().schema, latent_dim=2, hidden=(16,))
        history = pm.Trainer(model, epochs=20, batch_size=16, precision=precision, progress=False).fit(data())
        losses[precision] = [h["loss"] for h in history]
        assert next(model.parameters()).dtype == torch.float32
    assert losses["bf16"][-1] < losses["bf16"][0] - 2
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    assert losses["bf16"] != losses["fp32"]  # the nets did run in bfloat16


def test_under_bf16_autocast_the_nets_run_in_bf16_and_the_distributions_in_fp32():
    schema = pm.Schema([pm.Modality("image", (1, 8, 8), net="conv"), pm.Modality("x", (3,))])
    batch = pm.Batch.from_data(schema, {"image": torch.rand(4, 1, 8, 8), "x": torch.randn(4, 3)})
    model = pm.MVAE(schema, latent_dim=2, hidden=(8,), channels=(4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.decoders["image"](torch.zeros(4, 2)).dtype == torch.bfloat16
        posterior = model.encoders["image"](batch.values["image"])
        observation = model.observation("image", posterior.mean)
        loss = model.loss(batch).loss
    assert posterior.mean.dtype == posterior.var.dtype == observation.params.dtype == loss.dtype == torch.float32


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_cuda_matches_the_cpu(precision):
    """On a GPU, fp32 and bf16 autocast learn what the CPU learns (the final training loss within 10%
    of the CPU's: the GPU draws other sampling noise), and checking the loss every 50 steps instead of
    every step changes nothing but float rounding."""
    losses = {}
    for device, check_every in (("cpu", 1), ("cuda", 1), ("cuda", 50)):
        torch.manual_seed(0)
        model = pm.MVAE(data().schema, latent_dim=2, hidden=(16,))
        options = dict(epochs=20, batch_size=16, progress=False, check_every=check_every)
        if device == "cuda":
            options["precision"] = precision
        history = pm.Trainer(model, device=device, **options).fit(data())
        losses[device, check_every] = history[-1]["loss"]
        assert next(model.parameters()).device.type == device
    assert losses["cuda", 1] == pytest.approx(losses["cpu", 1], rel=0.1)
    assert losses["cuda", 50] == pytest.approx(losses["cuda", 1], rel=1e-4 if precision == "fp32" else 1e-2)
