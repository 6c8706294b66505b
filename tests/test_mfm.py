import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal import metrics

SCHEMA = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (2,)), pm.Modality("y", (), "categorical", num_classes=3)])


def toy(n=64, seed=0):
    """Two Gaussian inputs that both carry the class, and the class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    a = torch.nn.functional.one_hot(y, 3).float() * 2 + 0.3 * torch.randn(n, 3, generator=g)
    b = torch.stack([y.float() - 1, 1 - y.float()], 1) + 0.3 * torch.randn(n, 2, generator=g)
    return pm.Batch.from_data(SCHEMA, {"a": a, "b": b, "y": y.float()})


def mixed(batch):
    """Rows 0-9 lack ``a``, rows 10-19 lack ``b``, the rest have both."""
    n = len(batch)
    keep_a = torch.ones(n, 1, dtype=torch.bool)
    keep_b = torch.ones(n, 1, dtype=torch.bool)
    keep_a[:10], keep_b[10:20] = False, False
    return batch.with_observed({"a": batch.observed["a"] & keep_a, "b": batch.observed["b"] & keep_b})


def small(**options):
    torch.manual_seed(0)
    return pm.MFM(SCHEMA, hidden=(16,), factor_dim=8, shared_dim=4, modality_dim=2, **options)


def test_latent_blocks_and_label_detection():
    model = small()
    assert model.label == "y" and [m.name for m in model.inputs] == ["a", "b"]
    assert model.blocks == {"y": slice(0, 4), "a": slice(4, 6), "b": slice(6, 8)}
    assert model.embed(toy(5)).shape == (5, 8)


def test_factorised_decoder_uses_both_factors_and_only_its_own_modality_factor():
    model = small()
    z = torch.randn(4, model.latent_size, requires_grad=True)
    x_a = model.decode(z)["a"].mean.sum()
    (grad,) = torch.autograd.grad(x_a, z)
    assert grad[:, model.blocks["y"]].abs().sum() > 0
    assert grad[:, model.blocks["a"]].abs().sum() > 0
    assert torch.equal(grad[:, model.blocks["b"]], torch.zeros(4, 2))


def test_surrogate_is_used_exactly_for_samples_missing_an_input():
    model = small()
    batch = mixed(toy(30))
    codes = model.embed(batch)
    features = model.features_of(batch)
    full = model.full_codes(features)
    present = model.present(batch)
    surrogate = model.surrogate_codes(features, present, full)
    assert torch.equal(codes[20:], full[20:])
    assert torch.equal(codes[:20], surrogate[:20])
    assert not torch.allclose(codes[:20], full[:20])
    # An observed input keeps its own Z_a; the missing one's comes from the surrogate.
    assert torch.equal(codes[:10, model.blocks["b"]], full[:10, model.blocks["b"]])
    assert not torch.allclose(codes[:10, model.blocks["a"]], full[:10, model.blocks["a"]])
    # Mixed availability in one batch predicts as each group alone does.
    together = model.predict(batch, "y", proba=True)
    apart = torch.cat([model.predict(batch.select(slice(0, 10)), "y", proba=True),
                       model.predict(batch.select(slice(10, 30)), "y", proba=True)])
    torch.testing.assert_close(together, apart)
    # surrogate=False is the zero-fill baseline: the full model on every row.
    zero_fill = model.predict(batch, "y", proba=True, surrogate=False)
    torch.testing.assert_close(zero_fill, model.decode(full)["y"].mean)


@pytest.mark.slow
@pytest.mark.parametrize("surrogate", ["mask", "pattern"])
def test_training_learns_the_label_and_the_missing_input(surrogate):
    train, test = toy(256, seed=0), toy(200, seed=1)
    model = small(surrogate=surrogate, weights={"y": 5.0})
    pm.Trainer(model, epochs=60, batch_size=64, progress=False, seed=0).fit(mixed(train))
    y = test.values["y"]
    assert metrics.accuracy(model.predict(test, "y"), y) > 0.9
    assert metrics.accuracy(model.predict(test.without("a"), "y"), y) > 0.85
    assert metrics.accuracy(model.predict(test.without("b"), "y"), y) > 0.85
    a_from_b = model.predict(test.without("a"), "a")
    assert metrics.mse(a_from_b, test.values["a"]) < 0.6 * metrics.mse(torch.zeros_like(a_from_b) + 2 / 3, test.values["a"])


def test_modality_dropout_hides_one_input_from_the_fusion_of_complete_rows_in_training():
    batch = mixed(toy(40))
    model = small(modality_dropout=1.0)
    seen = []
    full_codes = model.full_codes
    model.full_codes = lambda features, fused=None: (seen.append(fused), full_codes(features, fused))[1]
    model.train()
    model.loss(batch)
    fused = next(f for f in seen if f is not None)  # [inputs, B]: what the fusion read
    complete = model.present(batch).all(0)
    assert (fused.sum(0)[complete] == 1).all() and fused[:, ~complete].all()  # each complete row lost one input
    assert fused[0, complete].any() and fused[1, complete].any()  # either input may be the one dropped
    # The fused code is the fusion of the features with the dropped input's zeroed.
    features = model.features_of(batch)
    zeroed = [x * fused[i, :, None] for i, x in enumerate(features)]
    torch.testing.assert_close(full_codes(features, fused)[:, model.blocks["y"]], model.to_y(torch.cat(zeroed, -1)))
    seen.clear()
    model.eval()
    model.loss(batch)
    assert all(f is None for f in seen)  # evaluation reads every input
    seen.clear()
    off = small(modality_dropout=0.0)
    off_codes = off.full_codes
    off.full_codes = lambda features, fused=None: (seen.append(fused), off_codes(features, fused))[1]
    off.train()
    off.loss(batch)
    assert all(f is None for f in seen)


@pytest.mark.slow
def test_modality_dropout_still_learns_the_label_from_both_inputs_and_each_alone():
    train, test = toy(256, seed=0), toy(200, seed=1)
    model = small(modality_dropout=0.5, weights={"y": 5.0})
    pm.Trainer(model, epochs=60, batch_size=64, progress=False, seed=0).fit(train)
    y = test.values["y"]
    for batch in (test, test.without("a"), test.without("b")):
        assert metrics.accuracy(model.predict(batch, "y"), y) > 0.85


def test_mmd_option_is_joint_or_per_block():
    model = small()
    z = torch.randn(16, model.latent_size)
    torch.manual_seed(1)
    joint = model.discrepancy(z)
    torch.manual_seed(1)
    prior = torch.randn_like(z)
    torch.testing.assert_close(joint, metrics.mmd(z, prior))
    block = small(mmd="block", bandwidth=2.0)
    torch.manual_seed(1)
    value = block.discrepancy(z)
    torch.manual_seed(1)
    expected = sum(metrics.mmd(z[:, s], torch.randn_like(z[:, s]), 2.0) for s in block.blocks.values())
    torch.testing.assert_close(value, expected)


def test_discriminative_ablation_has_no_generative_part():
    model = small(objective="discriminative")
    assert list(model.blocks) == ["y"] and not hasattr(model, "decoders") and not hasattr(model, "g_a")
    assert list(model.decode(torch.zeros(2, model.latent_size))) == ["y"]
    with pytest.raises(pm.ConfigError, match="only the label"):
        model.predict(toy(4), "a")
    with pytest.raises(pm.ConfigError, match="cannot impute"):
        model.impute(toy(4))


def test_generative_ablation_trains_the_label_only_as_a_probe():
    model = small(objective="generative")
    batch = toy(16)
    label_cost = -model.reconstruction(batch, {"y": model.decode(model.full_codes(model.features_of(batch)))["y"]}).sum()
    label_cost.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.features.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.label_decoder.parameters())


def test_unfactorised_ablation_has_one_latent_of_the_same_size():
    model = small(factorised=False)
    assert model.blocks == {"y": slice(0, 8)} and not hasattr(model, "to_a")
    z = torch.randn(3, 8, requires_grad=True)
    model.decode(z)["a"].mean.sum().backward()
    assert z.grad.abs().sum() > 0


def test_save_load_round_trip(tmp_path):
    model = small(surrogate="pattern")
    pm.Trainer(model, epochs=1, batch_size=32, progress=False).fit(mixed(toy(64)))
    model.save(tmp_path / "m")
    loaded = pm.load(tmp_path / "m")
    batch = mixed(toy(30, seed=3))
    torch.testing.assert_close(loaded.embed(batch), model.embed(batch), rtol=0, atol=0)
    torch.testing.assert_close(loaded.predict(batch, "y", proba=True), model.predict(batch, "y", proba=True), rtol=0, atol=0)


def test_generate_fixes_the_given_blocks():
    model = small()
    code = torch.tensor([0.5, -1.0, 2.0, 0.0])
    out = model.generate(5, codes={"y": code})
    assert len(out) == 5 and set(out.values) == {"a", "b", "y"}
    assert len(set(out.values["y"].tolist())) == 1  # the label depends on Z_y alone
    with pytest.raises(pm.ConfigError, match="unknown latent block"):
        model.generate(2, codes={"c": code})
    with pytest.raises(ValueError, match=r"codes\['y'\] must have shape \(4,\) or \(2, 4\), got \(3,\)"):
        model.generate(2, codes={"y": code[:3]})


def test_sequential_inputs_use_recurrent_nets():
    schema = pm.Schema([pm.Modality("s", (2,), sequential=True), pm.Modality("t", (1,), sequential=True),
                        pm.Modality("k", (), "categorical", num_classes=2)])
    g = torch.Generator().manual_seed(0)
    k = torch.randint(2, (32,), generator=g)
    steps = torch.linspace(0, 3, 12)
    s = torch.stack([torch.sin(steps + k[:, None] * 1.5), torch.cos(steps + k[:, None] * 1.5)], -1)
    t = ((2 * k[:, None] - 1.0) * steps / 3).unsqueeze(-1)
    data = pm.Batch.from_data(schema, {"s": s, "t": t, "k": k.float()})
    torch.manual_seed(0)
    model = pm.MFM(schema, hidden=(16,), rnn_hidden=16, factor_dim=8, weights={"k": 10.0})
    assert isinstance(model.features["s"].body, pm.nets.SequenceEncoder)
    pm.Trainer(model, epochs=40, batch_size=8, progress=False).fit(data)
    assert metrics.accuracy(model.predict(data.without("t"), "k"), k) > 0.9
    t_from_s = model.predict(data.without("t"), "t")
    assert t_from_s.shape == (32, 12, 1)
    assert metrics.mse(t_from_s, t) < 0.2 * metrics.mse(torch.zeros_like(t), t)
    terms = model.reconstruction_terms(data)  # what the trainer names after a non-finite loss
    assert set(terms) == {"s", "t", "k"} and all(np.isfinite(v) for v in terms.values())
    with pytest.raises(ValueError, match="pass steps"):
        model.generate(2)
    assert model.generate(2, steps=7).values["s"].shape == (2, 7, 2)


def test_refusals():
    with pytest.raises(pm.ConfigError, match="name the label"):
        pm.MFM(pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (2,))]))
    with pytest.raises(pm.ConfigError, match="not a modality"):
        pm.MFM(SCHEMA, label="z")
    with pytest.raises(pm.ConfigError, match="objective"):
        pm.MFM(SCHEMA, objective="both")
    model = small()
    with pytest.raises(NotImplementedError, match="no likelihood"):
        model.log_likelihood(toy(4))
    with pytest.raises(ValueError, match="samples must be 0"):
        model.impute(toy(4), samples=10)
    filled = model.impute(mixed(toy(30)))
    assert all(m.all() for m in filled.observed.values())
    np.testing.assert_array_equal(filled.values["a"][10:].numpy(), toy(30).values["a"][10:].numpy())


@pytest.mark.slow
def test_digit_styles_short_run_beats_chance():
    train, test, _, y_test = pm.load_digit_styles(label=True)
    torch.manual_seed(0)
    model = pm.MFM(train.schema, weights={"label": 5000.0})
    pm.Trainer(model, epochs=4, batch_size=64, progress=False).fit(train)
    assert metrics.accuracy(model.predict(test, "label"), y_test) > 0.5


def test_report_draws_factor_generations_and_traces(tmp_path):
    from polymodal.report import plot_factor_generations, plot_traces

    train, _, _, _ = pm.load_digit_styles(label=True)
    torch.manual_seed(0)
    model = pm.MFM(train.schema, hidden=(16,), channels=(4, 8), factor_dim=8)
    path = plot_factor_generations(model, train.select(slice(0, 2)), tmp_path / "generations.png", draws=3)
    assert path.stat().st_size > 1000
    truth = torch.randn(3, 20, 3)
    path = plot_traces(truth, {"noisy": truth + 0.1}, tmp_path / "traces.png")
    assert path.stat().st_size > 1000


def test_scalar_inputs_as_table_columns_are_modalities():
    schema = pm.Schema([pm.Modality("x1"), pm.Modality("x2"), pm.Modality("k", (), "categorical", num_classes=2)])
    k = torch.tensor([0, 1] * 8)
    batch = pm.Batch.from_data(schema, {"x1": k.float() + 0.1 * torch.randn(16), "x2": torch.randn(16), "k": k.float()})
    model = pm.MFM(schema, hidden=(8,), factor_dim=4)
    assert model.present(batch.without("x2")).tolist() == [[True] * 16, [False] * 16]
    assert torch.isfinite(model.loss(batch).loss)
    assert model.predict(batch.without("x2"), "k").shape == (16,)


def test_run_configs_and_evaluation_need_no_density():
    from polymodal.evaluation import evaluate
    from polymodal.run import parse_config

    config = parse_config({"data": {"train": "t.csv"}, "model": {"name": "mfm"}})
    assert config.evaluate.samples == 0
    assert parse_config({"data": {"train": "t.csv"}, "model": {"name": "mvae"}}).evaluate.samples == 100
    with pytest.raises(pm.ConfigError, match="defines no density"):
        parse_config({"data": {"train": "t.csv"}, "model": {"name": "mfm"}, "evaluate": {"samples": 100}})
    scores = evaluate(small(), toy(40), samples=0).scores
    assert set(scores) == {"a", "b", "y"} and all("log_likelihood" not in s for s in scores.values())
