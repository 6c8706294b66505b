import pytest
import torch

import polymodal as pm
from polymodal.gaussian import Experts, moment_match, stack


def short_spirals(n=24, steps=20):
    train, _ = pm.load_spirals()
    return pm.Batch(train.schema, {k: v[:n, :steps] for k, v in train.values.items()},
                    {k: m[:n, :steps] for k, m in train.observed.items()})


def model(**kwargs):
    torch.manual_seed(0)
    return pm.MDMM(short_spirals().schema, **{"latent_dim": 3, "hidden": (8,), "transition_hidden": 8, **kwargs})


def test_one_step_filter_and_smoother_are_the_product_with_the_prior():
    m = model()
    batch = short_spirals(4, 1).without("y", "direction")
    expert = m.encoders["x"](batch.values["x"])[:, 0]
    prior = m.prior((4,))
    expected = (prior * expert).gaussian()
    filtered = m.filter(batch)[:, 0]
    smoothed = m.smooth(batch)[:, 0]
    for got in (filtered, smoothed):  # at the last step the future p(z) cancels the divided-out p(z)
        torch.testing.assert_close(got.mean, expected.mean)
        torch.testing.assert_close(got.var, expected.var)


def test_two_step_backward_filter_matches_the_algorithm_by_hand():
    m = model()
    batch = short_spirals(3, 2)
    names = batch.schema.names
    experts = [m.encoders[n](batch.values[n]) for n in names]  # each [3, 2, D]; everything observed

    def product(first, t):
        return (first * stack([e[:, t] for e in experts]).natural.prod(0)).gaussian()

    evidence = m.evidence(batch, torch.ones(1, len(names), dtype=torch.bool))
    torch.manual_seed(5)
    posts, futures, _ = m.backward_filter(evidence, particles=7)
    torch.manual_seed(5)
    post_2 = product(m.prior((3,)), 1)
    z = post_2.rsample((7,))
    future_1 = moment_match((m.prior((7, 3)) * m.transitions["bwd"](z)).gaussian(), dim=0)
    post_1 = product(future_1, 0)
    torch.testing.assert_close(posts.mean[0, :, 1], post_2.mean)
    torch.testing.assert_close(posts.var[0, :, 1], post_2.var)
    torch.testing.assert_close(futures.mean[0, :, 0], future_1.mean)
    torch.testing.assert_close(futures.var[0, :, 0], future_1.var)
    torch.testing.assert_close(posts.mean[0, :, 0], post_1.mean)
    # the smoother: future * p(z) / p(z) * experts at t = 1, then future * p(z_2 | z_1) / p(z) * experts
    posts_s, priors, path = m.forward_smooth(evidence, futures, sample=False)
    torch.testing.assert_close(posts_s.mean[0, :, 0], post_1.mean)
    torch.testing.assert_close(priors.mean[0, :, 0], m.prior((3,)).mean)
    conditional = (m.prior((3,)) * m.transitions["fwd"](path[0, :, 0])).gaussian()
    evidence_2 = stack([e[:, 1] for e in experts]).natural.prod(0)
    quotient = (futures[0, :, 1] * conditional / m.prior((3,)) * evidence_2).gaussian()
    torch.testing.assert_close(priors.mean[0, :, 1], conditional.mean)
    torch.testing.assert_close(posts_s.mean[0, :, 1], quotient.mean)
    torch.testing.assert_close(posts_s.var[0, :, 1], quotient.var)


def test_masked_experts_change_nothing():
    m = model()
    batch = pm.missing.drop_steps(short_spirals(6, 10), 0.5, generator=torch.Generator().manual_seed(0))
    other = {k: v + 7 if v.is_floating_point() else 1 - v for k, v in batch.values.items()}  # a valid other class
    garbage = pm.Batch(batch.schema, {k: torch.where(batch.observed[k], v, other[k]) for k, v in batch.values.items()},
                            batch.observed)
    for query in (m.filter, m.smooth):
        torch.manual_seed(0)
        a = query(batch)
        torch.manual_seed(0)
        b = query(garbage)
        torch.testing.assert_close(a.mean, b.mean)


def test_short_training_improves_the_smoothing_elbo():
    batch = short_spirals()
    m = model(particles=5)
    trainer = pm.Trainer(m, epochs=25, batch_size=12, lr=5e-3, progress=False)
    before = trainer.evaluate(batch)["smoothing"]
    trainer.fit(batch)
    assert trainer.evaluate(batch)["smoothing"] > before + 0.5


def test_inference_calls_with_mixed_missingness():
    m = model(eval_particles=10)
    batch = short_spirals(8, 12)
    g = torch.Generator().manual_seed(1)
    batch = pm.missing.drop_modalities(pm.missing.drop_steps(batch, 0.3, generator=g), 0.4, g)
    assert m.filter(batch).shape == (8, 12, 3) and m.smooth(batch).shape == (8, 12, 3)
    assert m.sample_latents(batch, 4).shape == (4, 8, 12, 3)
    filled = m.impute(batch)
    for name in batch.schema.names:
        kept = batch.observed[name]
        assert torch.equal(filled.values[name][kept], batch.values[name][kept])
    longer = m.extrapolate(batch, forward=5, backward=3)
    assert longer.values["x"].shape == (8, 20) and torch.equal(longer.values["x"][:, 3:15][batch.observed["x"]],
                                                                batch.values["x"][batch.observed["x"]])
    labels = m.predict(batch, "direction", ["x", "y"])
    assert labels.shape == (8, 12) and labels.dtype == torch.long
    assert m.generate(2, steps=6).values["y"].shape == (2, 6)


def test_static_modalities_are_refused():
    with pytest.raises(ValueError, match="not sequential"):
        pm.MDMM(pm.Schema([pm.Modality("s", (2,))]))


class Linear(torch.nn.Module):
    """A known linear-Gaussian transition expert N(a z, s2)."""

    def __init__(self, a, s2):
        super().__init__()
        self.a, self.s2 = a, s2

    def forward(self, z):
        return pm.Gaussian(self.a * z, torch.full_like(z, self.s2))


def test_filter_and_smoother_against_closed_forms_with_known_gaussians():
    m = pm.MDMM(pm.Schema([pm.Modality("x", (), sequential=True)]), latent_dim=1)
    m.transitions["bwd"], m.transitions["fwd"] = Linear(0.8, 0.5), Linear(-0.6, 0.25)
    pv = (1 + 1e-3) ** 2  # the prior N(0, pv): log-std 0 plus the 1e-3 floor
    obs_precision, obs_mean = torch.tensor([2.0, 4.0]), torch.tensor([1.0, -0.5])
    evidence = Experts(obs_precision.view(1, 1, 2, 1), (obs_precision * obs_mean).view(1, 1, 2, 1))
    torch.manual_seed(0)
    posts, futures, _ = m.backward_filter(evidence, particles=400_000)
    # t = 2: prior * observation
    p2 = 1 / pv + 4.0
    mu2, v2 = -0.5 * 4.0 / p2, 1 / p2
    torch.testing.assert_close(posts.mean[0, 0, 1], torch.tensor([mu2]))
    torch.testing.assert_close(posts.var[0, 0, 1], torch.tensor([v2]))
    # t = 1: future = E_{z2 ~ post} PoE(prior, N(0.8 z2, 0.5)), moment matched
    p = 1 / pv + 1 / 0.5
    c = 0.8 / 0.5 / p
    f_mean, f_var = c * mu2, 1 / p + c**2 * v2
    torch.testing.assert_close(futures.mean[0, 0, 0], torch.tensor([f_mean]), atol=3e-3, rtol=0)
    torch.testing.assert_close(futures.var[0, 0, 0], torch.tensor([f_var]), atol=3e-3, rtol=0)
    p1 = 1 / futures.var[0, 0, 0] + 2.0
    mu1 = (futures.mean[0, 0, 0] / futures.var[0, 0, 0] + 2.0 * 1.0) / p1
    torch.testing.assert_close(posts.mean[0, 0, 0], mu1)
    # smoother along the mean path: step 1 is the filter's; step 2 multiplies in N(-0.6 z1, 0.25)
    smoothed, priors, path = m.forward_smooth(evidence, futures, sample=False)
    torch.testing.assert_close(smoothed.mean[0, 0, 0], mu1)
    z1 = path[0, 0, 0]
    p2s = 1 / pv + 4.0 + 1 / 0.25
    torch.testing.assert_close(smoothed.var[0, 0, 1], torch.tensor([1 / p2s]))
    torch.testing.assert_close(smoothed.mean[0, 0, 1], (-0.5 * 4.0 + -0.6 * z1 / 0.25) / p2s)
    torch.testing.assert_close(priors.var[0, 0, 1], torch.tensor([1 / (1 / pv + 4.0)]))
    torch.testing.assert_close(priors.mean[0, 0, 1], (-0.6 * z1 / 0.25) / (1 / pv + 4.0))


def test_a_target_only_modality_never_informs_the_posterior_but_is_scored_by_every_subset():
    m = model(inputs=["x", "y"], eval_particles=10)
    assert sorted(m.encoders) == ["x", "y"]
    scored = {n: v.flatten().tolist() for n, v in m.scored(m.subsets("cpu")).items()}
    assert scored == {"x": [True, True, False], "y": [True, False, True], "direction": [True, True, True]}
    batch = short_spirals(6, 10)
    flipped = pm.Batch(batch.schema, {**batch.values, "direction": 1 - batch.values["direction"]}, batch.observed)
    torch.manual_seed(0)
    smoothed = m.smooth(batch)
    torch.manual_seed(0)
    again = m.smooth(flipped)
    torch.testing.assert_close((again.mean, again.var), (smoothed.mean, smoothed.var))
    with pytest.raises(pm.ConfigError, match="inputs must name modalities"):
        model(inputs=["x", "z"])


def test_input_subsets_are_configurable():
    assert model().subsets("cpu").tolist() == [[True] * 3, [True, False, False], [False, True, False], [False, False, True]]
    assert model(subsets=[["x", "y"]]).subsets("cpu").tolist() == [[True] * 3, [True, True, False]]
    assert model(subsets=[]).subsets("cpu").tolist() == [[True] * 3]
    for bad in ([["x", "z"]], [[]]):
        with pytest.raises(pm.ConfigError, match="subsets must name input modalities"):
            model(subsets=bad)
    with pytest.raises(pm.ConfigError, match="subsets must name input modalities"):
        model(inputs=["x", "y"], subsets=[["direction"]])
    with pytest.raises(pm.ConfigError, match="transition_min_std"):
        model(transition_min_std=0.0)


def test_reconstruction_weights_default_to_one_and_can_be_set():
    batch = short_spirals(6, 10)
    z = torch.randn(6, 10, 3)
    plain, heavy = model(), model(weights={"x": 3.0})
    with torch.no_grad():
        terms = {n: obs.log_prob(batch.values[n], batch.observed[n]).sum() for n, obs in plain.decode(z).items()}
        assert plain.lambdas == {"x": 1.0, "y": 1.0, "direction": 1.0}
        torch.testing.assert_close(plain.reconstruction(batch, plain.decode(z)).sum(), sum(terms.values()))
        torch.testing.assert_close(heavy.reconstruction(batch, plain.decode(z)).sum(), sum(terms.values()) + 2 * terms["x"])


def test_rescale_divides_each_weight_by_the_observed_fraction():
    batch = short_spirals(6, 10)
    half = batch.with_observed({"x": batch.observed["x"] & (torch.arange(10) % 2 == 0)})
    rescaled, plain = model(), model(rescale=False)
    with torch.no_grad():
        decoded = plain.decode(torch.randn(6, 10, 3))
        terms = {n: obs.log_prob(half.values[n], half.observed[n]).sum() for n, obs in decoded.items()}
        assert plain.rescaled(half) == plain.lambdas
        torch.testing.assert_close(rescaled.reconstruction(half, decoded, rescaled.rescaled(half)).sum(),
                                   sum(terms.values()) + terms["x"])
        assert {n: float(w) for n, w in rescaled.rescaled(batch).items()} == plain.lambdas


def test_path_log_prior_is_the_markov_chain_by_hand():
    m = model()
    path = torch.randn(4, 2, 3)
    with torch.no_grad():
        expected = m.prior((4,)).log_prob(path[:, 0]) + m.transition(path[:, 0]).log_prob(path[:, 1])
        torch.testing.assert_close(m.log_prior(path), expected)


def test_importance_sampled_imputation_weights_whole_paths():
    m = model(eval_particles=10)
    batch = pm.missing.drop_steps(short_spirals(5, 8), 0.4, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    (log_w, decoded), = m.importance_draws(batch, 6, 100)
    torch.manual_seed(0)
    z, log_q = m.sampler(batch)(6)
    expected = m.log_prior(z) - log_q + sum(obs.log_prob(batch.values[n], batch.observed[n]).sum(-1)
                                            for n, obs in m.decode(z).items())
    assert log_w.shape == (6, 5)
    torch.testing.assert_close(log_w, expected)
    filled = m.impute(batch, samples=30)
    for name in batch.schema.names:
        kept = batch.observed[name]
        assert torch.equal(filled.values[name][kept], batch.values[name][kept])
        assert torch.isfinite(filled.values[name].float()).all()


def test_log_likelihood_over_paths_is_finite_brackets_the_elbo_and_grows_with_training():
    batch = pm.missing.drop_steps(short_spirals(8, 12), 0.3, generator=torch.Generator().manual_seed(4))
    m = model(eval_particles=20)
    torch.manual_seed(1)
    log_w = torch.cat([log_w for log_w, _ in m.importance_draws(batch, 1000, 500)])
    elbo = log_w.mean(0)  # E_q log p(x_o, z) / q(z), per sequence
    one = torch.stack([m.log_likelihood(batch, n_samples=1) for _ in range(50)])
    many = m.log_likelihood(batch, n_samples=1000)
    assert torch.isfinite(one).all() and torch.isfinite(many).all() and many.shape == (8,)
    assert (many > elbo).all()  # Jensen: the 1000-sample estimate is above the ELBO, one sample is it in expectation
    assert ((one.mean(0) - elbo).abs() < 4 * log_w.std(0) / 50**0.5).all()
    assert (one.mean(0) < many).all()
    pm.Trainer(m, epochs=30, batch_size=8, lr=1e-2, progress=False).fit(batch)
    assert m.log_likelihood(batch, n_samples=1000).mean() > many.mean()


def ramps(n, seed, steps=9):
    """Straight lines of random level and slope: ``x`` rises as ``y`` falls."""
    g = torch.Generator().manual_seed(seed)
    level, slope = torch.rand(2, n, 1, 2, generator=g) * 2 - 1
    s = torch.linspace(-1, 1, steps)[None, :, None]
    return {"x": level + slope * s, "y": level - slope * s}


def test_a_deleted_middle_step_is_filled_between_its_neighbours():
    # noise 0.1: with unit noise on unit-scale data the ELBO keeps nothing of a step in the path
    schema = pm.Schema([pm.Modality(n, (2,), {"name": "gaussian", "scale": 0.1}, sequential=True) for n in ("x", "y")])
    torch.manual_seed(0)
    m = pm.MDMM(schema, latent_dim=4, hidden=(32,), transition_hidden=16)
    pm.Trainer(m, epochs=60, batch_size=32, lr=3e-3, progress=False).fit(pm.Batch.from_data(schema, ramps(128, 0)))
    truth = ramps(32, 1)
    hidden = {n: v.clone().index_fill_(1, torch.tensor([4]), float("nan")) for n, v in truth.items()}
    filled = m.impute(pm.Batch.from_data(schema, hidden))
    for n in ("x", "y"):
        before, fill, after = truth[n][:, 3], filled.values[n][:, 4], truth[n][:, 5]
        low, high = torch.minimum(before, after), torch.maximum(before, after)
        assert float(((fill >= low - 0.05) & (fill <= high + 0.05)).float().mean()) >= 0.9, n
        assert float(((fill - truth[n][:, 4]) ** 2).mean()) < 0.1 * float(truth[n].var()), n


def test_partial_drop_leaves_out_the_expert_of_a_partly_observed_step():
    schema = pm.Schema([pm.Modality(n, (2,), sequential=True) for n in ("a", "b")])
    values = torch.randn(2, 3, 5, 2, generator=torch.Generator().manual_seed(0))
    step = torch.arange(5)[None, :, None] == 2
    part = pm.Batch.from_data(schema, {"a": values[0], "b": values[1]}, {"a": ~(step & (torch.arange(2) == 1)).expand(3, 5, 2)})
    gone = pm.Batch.from_data(schema, {"a": values[0], "b": values[1]}, {"a": ~step.expand(3, 5, 2)})
    torch.manual_seed(0)
    m = pm.MDMM(schema, latent_dim=3, hidden=(8,), transition_hidden=8, partial="drop")
    ones = torch.ones(1, 2, dtype=torch.bool)
    torch.testing.assert_close(m.evidence(part, ones).precision, m.evidence(gone, ones).precision)
    m.config.partial = "zeros"  # the default: the encoder reads the step with a zero in its gap
    assert not torch.equal(m.evidence(part, ones).precision, m.evidence(gone, ones).precision)
    with pytest.raises(pm.ConfigError, match="partial"):
        pm.MDMM(schema, partial="skip")


def test_masked_encoders_let_a_partly_observed_steps_entries_move_the_fill():
    schema = pm.Schema([pm.Modality(n, (2,), sequential=True) for n in ("a", "b")])
    values = torch.randn(2, 3, 5, 2, generator=torch.Generator().manual_seed(0))
    hole = (torch.arange(5)[None, :, None] == 2) & (torch.arange(2) == 1)  # entry 1 of a at step 2
    torch.manual_seed(0)
    m = pm.MDMM(schema, latent_dim=3, hidden=(8,), transition_hidden=8, partial="mask", entry_drop=0.5)
    m.eval()

    def fill(a):
        torch.manual_seed(1)  # the same backward particles
        return m.impute(pm.Batch.from_data(schema, {"a": a, "b": values[1]}, {"a": ~hole.expand(3, 5, 2)})).values["a"][:, 2, 1]

    moved = values[0].clone()
    moved[:, 2, 0] += 1  # the observed entry of the partly observed step
    assert not torch.allclose(fill(moved), fill(values[0]))
    hidden = values[0].clone()
    hidden[:, 2, 1] += 1  # the hidden entry itself is never read
    torch.testing.assert_close(fill(hidden), fill(values[0]))
    batch = pm.Batch.from_data(schema, {"a": values[0], "b": values[1]})
    assert m.training_inputs(batch) is batch  # deletion only in training
    m.train()
    kept = m.training_inputs(batch).observed
    assert not all(kept[n].all() for n in ("a", "b")) and any((kept[n].any(-1) & ~kept[n].all(-1)).any() for n in ("a", "b"))
    video = pm.Schema([pm.Modality("frames", (1, 8, 8), net="conv", sequential=True), schema["b"]])
    with pytest.raises(pm.ConfigError, match=r"partial='mask' needs MLP encoders.*\['frames'\]"):
        pm.MDMM(video, partial="mask")


def test_transitions_linear_paths_start_at_the_identity_by_default_and_at_random_as_the_reference():
    m = model()
    z = torch.randn(4, 3)
    for direction in ("fwd", "bwd"):
        torch.testing.assert_close(m.transitions[direction].linear(z), z)
    assert not torch.allclose(model(transition_identity=False).transitions["fwd"].linear(z), z)
