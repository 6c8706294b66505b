import pytest
import torch

import polymodal as pm

VARIANTS = [("forward", False), ("forward", True), ("backward", False), ("backward", True)]


def short_spirals(n=16, steps=15):
    train, _ = pm.load_spirals()
    return pm.Batch(train.schema, {k: v[:n, :steps] for k, v in train.values.items()},
                    {k: m[:n, :steps] for k, m in train.observed.items()})


def model(direction="forward", skip=False, **kwargs):
    torch.manual_seed(0)
    return pm.DKS(short_spirals().schema, direction=direction, skip=skip,
                  **{"latent_dim": 3, "hidden": (8,), "transition_hidden": 8, "rnn_hidden": 6, **kwargs})


def test_labels_name_the_paper_variants():
    assert [model(d, s).label for d, s in VARIANTS] == ["F-Mask", "F-Skip", "B-Mask", "B-Skip"]
    with pytest.raises(pm.ConfigError, match="direction"):
        model("sideways")


def test_skip_keeps_the_state_over_a_missing_step():
    m = model("forward", skip=True)
    batch = short_spirals(4, 6)
    gone = batch.with_observed({k: o.clone() for k, o in batch.observed.items()})
    for name in batch.schema.names:
        gone.observed[name][:, 3] = False
    h = m.summaries(gone)
    torch.testing.assert_close(h[:, 3], h[:, 2], rtol=0, atol=0)
    assert not torch.equal(h[:, 4], h[:, 3])


@pytest.mark.parametrize("skip", [False, True])
def test_backward_summaries_read_only_the_future(skip):
    m = model("backward", skip)
    batch = short_spirals(4, 6)
    changed = pm.Batch(batch.schema, {**batch.values, "x": batch.values["x"].index_fill(1, torch.tensor([0]), 9.0)},
                       batch.observed)
    a, b = m.summaries(batch), m.summaries(changed)
    torch.testing.assert_close(a[:, 1:], b[:, 1:], rtol=0, atol=0)
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_steps_after_the_last_observation_follow_the_conditional_prior():
    m = model("forward")
    batch = pm.missing.keep_segment(short_spirals(5, 10), 0.0, 0.6)
    m.eval()
    posts, priors, path = m.posterior(batch, sample=False)
    torch.testing.assert_close(posts.mean[:, 6:], priors.mean[:, 6:])
    torch.testing.assert_close(posts.var[:, 6:], priors.var[:, 6:])
    expected = m.transition(path[:, 6])
    torch.testing.assert_close(posts.mean[:, 7], expected.mean)
    assert not torch.allclose(posts.mean[:, :6], priors.mean[:, :6])


def test_with_nothing_observed_a_path_is_drawn_from_the_prior_and_weighs_exactly_one():
    m = model("forward")
    batch = short_spirals(4, 6).with_observed({n: torch.zeros(4, 6, dtype=torch.bool) for n in ("x", "y", "direction")})
    m.eval()
    with torch.no_grad():
        (log_w, _), = m.importance_draws(batch, 3, 100)
    torch.testing.assert_close(log_w, torch.zeros(3, 4))


@pytest.mark.parametrize("direction,skip", VARIANTS)
def test_every_variant_trains_and_infers_with_mixed_missingness(direction, skip):
    batch = short_spirals()
    m = model(direction, skip)
    trainer = pm.Trainer(m, epochs=15, batch_size=8, lr=5e-3, progress=False)
    before = trainer.evaluate(batch)["elbo"]
    trainer.fit(batch)
    assert trainer.evaluate(batch)["elbo"] > before + 0.3
    g = torch.Generator().manual_seed(1)
    corrupted = pm.missing.drop_modalities(pm.missing.drop_steps(batch, 0.3, generator=g), 0.4, g)
    filled = m.impute(corrupted)
    for name in batch.schema.names:
        kept = corrupted.observed[name]
        assert torch.equal(filled.values[name][kept], corrupted.values[name][kept])
    assert m.extrapolate(corrupted, forward=4).values["y"].shape == (16, 19)
    assert m.predict(corrupted, "direction", ["x", "y"]).shape == (16, 15)


def test_round_trip_gives_identical_outputs(tmp_path):
    m = model("backward", skip=True)
    batch = pm.missing.drop_steps(short_spirals(6, 8), 0.3, generator=torch.Generator().manual_seed(0))
    m.save(tmp_path / "m")
    loaded = pm.load(tmp_path / "m")
    assert type(loaded) is pm.DKS and loaded.config == m.config
    torch.testing.assert_close(loaded.embed(batch), m.embed(batch), rtol=0, atol=0)


def test_inputs_choose_what_the_rnns_read():
    m = model(inputs=["x", "y"])
    batch = short_spirals(4, 6)
    flipped = pm.Batch(batch.schema, {**batch.values, "direction": 1 - batch.values["direction"]}, batch.observed)
    torch.testing.assert_close(m.summaries(batch), m.summaries(flipped), rtol=0, atol=0)
    assert m.summaries(batch).shape == (4, 6, 12)
    with pytest.raises(pm.ConfigError, match="inputs"):
        model(inputs=["z"])


def test_log_likelihood_over_paths_is_finite_brackets_the_elbo_and_grows_with_training():
    batch = pm.missing.drop_steps(short_spirals(8, 12), 0.3, generator=torch.Generator().manual_seed(4))
    m = model("backward")
    torch.manual_seed(1)
    elbo = torch.cat([log_w for log_w, _ in m.importance_draws(batch, 2000, 500)]).mean(0)
    many = m.log_likelihood(batch, n_samples=1000)
    assert torch.isfinite(many).all() and (many > elbo).all()
    pm.Trainer(m, epochs=30, batch_size=8, lr=1e-2, progress=False).fit(batch)
    assert m.log_likelihood(batch, n_samples=1000).mean() > many.mean()
