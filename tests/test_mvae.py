import math

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.metrics import cross_modal
from polymodal.models.mvae import _distinct


def tabular(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (4,)), pm.Modality("c", (), "categorical", num_classes=3)])
    data = {"a": torch.randn(n, 3, generator=g), "b": torch.randn(n, 4, generator=g), "c": torch.randint(0, 3, (n,), generator=g)}
    return pm.Batch.from_data(schema, data)


def test_mixed_availability_matches_per_sample_encoding():
    torch.manual_seed(0)
    batch = tabular(6)
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,))
    mixed = pm.missing.drop_modalities(batch, 0.5, torch.Generator().manual_seed(1))
    q = model.encode(mixed)
    for i in range(len(mixed)):
        one = mixed.select([i])
        missing = [n for n in batch.schema.names if not bool(one.present(n)[0])]
        alone = model.encode(batch.select([i]).without(*missing))
        torch.testing.assert_close(q.mean[i], alone.mean[0])
        torch.testing.assert_close(q.var[i], alone.var[0])


def test_nothing_observed_gives_the_prior():
    batch = tabular(3)
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,))
    q = model.encode(batch.without("a", "b", "c"))
    torch.testing.assert_close(q.mean, torch.zeros(3, 4))
    torch.testing.assert_close(q.var, torch.ones(3, 4))


def test_encode_is_the_product_with_the_prior_expert():
    batch = tabular(5)
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,))
    experts = [model.encoders[n](batch.values[n]) for n in ("a", "b")]
    precision = 1 + 1 / experts[0].var + 1 / experts[1].var
    mean = (experts[0].mean / experts[0].var + experts[1].mean / experts[1].var) / precision
    q = model.encode(batch.without("c"))
    torch.testing.assert_close(q.var, 1 / precision)
    torch.testing.assert_close(q.mean, mean)


def test_terms_are_counted_once_per_distinct_subset():
    # subsets: joint, {a}, {b}; sample 0 has both, sample 1 only a, sample 2 nothing
    subsets = torch.tensor([[1, 1], [1, 0], [0, 1]], dtype=torch.bool)
    present = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    counted = _distinct(subsets[:, :, None] & present)
    assert counted.tolist() == [[True, True, False], [True, False, False], [True, False, False]]


def test_unpaired_sample_loss_is_its_single_modality_elbo():
    torch.manual_seed(0)
    batch = tabular(8).without("b", "c")
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,), subsets=0)
    torch.manual_seed(1)
    loss = model.loss(batch, beta=0.5).loss
    q = model.encode(batch)
    # the loss drew noise for 4 stacked subsets (joint, {a}, {b}, {c}); only the joint term counts
    torch.manual_seed(1)
    eps = torch.randn(4, 8, 4)[0]
    z = q.mean + eps * q.std
    recon = model.lambdas["a"] * model.decode(z)["a"].log_prob(batch.values["a"], batch.observed["a"])  # lambda_a = 4 / 3
    elbo = recon - 0.5 * q.kl(model.prior((8,)))
    torch.testing.assert_close(loss, -elbo.mean())


def test_random_subsets_have_sizes_between_two_and_m_minus_one():
    torch.manual_seed(0)
    schema = pm.Schema([pm.Modality(n, (2,)) for n in "abcde"])
    model = pm.MVAE(schema, latent_dim=2, hidden=(8,), subsets=20)
    subsets = model.subsets()
    assert subsets.shape == (1 + 5 + 20, 5)
    assert subsets[0].all() and torch.equal(subsets[1:6], torch.eye(5, dtype=torch.bool))
    sizes = subsets[6:].sum(1)
    assert ((sizes >= 2) & (sizes <= 4)).all()


def test_random_subsets_are_uniform_over_the_subsets_of_sizes_two_to_m_minus_one():
    # as drawing each modality with probability 1/2 and redrawing until the size fits: uniform over the 10 subsets
    torch.manual_seed(0)
    model = pm.MVAE(pm.Schema([pm.Modality(n, (2,)) for n in "abcd"]), latent_dim=2, hidden=(8,), subsets=4000)
    drawn = model.subsets()[5:]
    codes = (drawn.long() * torch.tensor([1, 2, 4, 8])).sum(1)
    counts = torch.bincount(codes, minlength=16).float()
    sizes = torch.tensor([bin(c).count("1") for c in range(16)])
    allowed = (sizes >= 2) & (sizes <= 3)
    assert allowed.sum() == 10 and counts[~allowed].sum() == 0
    torch.testing.assert_close(counts[allowed] / len(drawn), torch.full((10,), 0.1), atol=0.02, rtol=0)


def test_each_modality_is_decoded_only_at_the_terms_that_score_it():
    torch.manual_seed(0)
    batch = tabular(8)
    model = pm.MVAE(batch.schema, latent_dim=2, hidden=(8,), subsets=1)
    rows = {n: getattr(model, f"rows_{i}").tolist() for i, n in enumerate(batch.schema.names)}
    assert rows == {"a": [0, 1, 4], "b": [0, 2, 4], "c": [0, 3, 4]}  # joint, the single, the random subset
    crossed = pm.MVAE(batch.schema, latent_dim=2, hidden=(8,), subsets=1, cross=True)
    assert crossed.rows_0.tolist() == [0, 1, 2, 3, 4]


def test_lambda_weights_scale_the_reconstruction():
    batch = tabular(16).without("b", "c")
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,), subsets=0, weights={})
    torch.manual_seed(3)
    base = model.loss(batch, beta=0.0).terms["recon"]
    model.config.weights = {"a": 3.0}
    torch.manual_seed(3)
    torch.testing.assert_close(model.loss(batch, beta=0.0).terms["recon"], 3 * base)


def test_quotient_variant_is_proper_and_trains():
    batch = pm.missing.drop_modalities(tabular(64), 0.3, torch.Generator().manual_seed(0))
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,), quotient=True)
    q = model.encode(batch)
    assert (q.var > 0).all() and torch.isfinite(q.mean).all()
    history = pm.Trainer(model, epochs=3, batch_size=16, progress=False).fit(batch)
    assert all(math.isfinite(h["loss"]) for h in history)


def test_quotient_posterior_matches_closed_form():
    batch = tabular(4)
    model = pm.MVAE(batch.schema, latent_dim=2, hidden=(8,), quotient=True)
    e = [model.encoders[n](batch.values[n]) for n in ("a", "b")]
    precision = 1 / e[0].var + 1 / e[1].var - 1  # divided by the prior once
    q = model.encode(batch.without("c"))
    torch.testing.assert_close(q.var, 1 / precision)
    torch.testing.assert_close(q.mean, (e[0].mean / e[0].var + e[1].mean / e[1].var) / precision)
    direct = (e[0] * e[1] / model.prior((4,))).gaussian()
    torch.testing.assert_close(q.mean, direct.mean)


def test_impute_keeps_observed_entries_and_fills_the_rest():
    batch = tabular(32)
    holes = pm.missing.mcar((32, 4), 0.4, torch.Generator().manual_seed(0))
    partial = batch.with_observed({"b": holes}).without("c")
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,))
    filled = model.impute(partial)
    assert torch.equal(filled.values["b"][holes], batch.values["b"][holes])
    assert torch.equal(filled.values["a"], batch.values["a"])
    assert all(m.all() for m in filled.observed.values())
    assert filled.values["c"].dtype == torch.long and ((filled.values["c"] >= 0) & (filled.values["c"] < 3)).all()
    assert not torch.equal(filled.values["b"][~holes], torch.zeros(int((~holes).sum())))


def test_generate_and_log_likelihood_shapes():
    batch = tabular(10)
    model = pm.MVAE(batch.schema, latent_dim=4, hidden=(16,))
    sample = model.generate(7)
    assert sample.values["a"].shape == (7, 3) and sample.values["c"].shape == (7,)
    torch.manual_seed(0)
    ll = model.log_likelihood(batch, n_samples=300, chunk=64)
    assert ll.shape == (10,) and torch.isfinite(ll).all()
    torch.manual_seed(0)
    elbo = -model.loss(batch.select([0]), beta=1.0).loss.detach()
    # the importance-weighted estimate is a tighter bound than the one-sample ELBO (on average)
    assert float(ll[0]) > float(elbo) - 1.0


def test_log_likelihood_is_exact_with_the_exact_posterior_as_proposal():
    # x = W z + b + N(0, s^2 I) with z ~ N(0, 1) in one dimension: p(x) = N(b, W W^T + s^2 I). With the
    # encoder set to the exact posterior's expert, every importance weight equals p(x).
    s2 = 0.25
    schema = pm.Schema([pm.Modality("x", (2,), {"name": "gaussian", "scale": 0.5})])
    model = pm.MVAE(schema, latent_dim=1, hidden=(), subsets=0)
    w, b = model.decoders["x"].body[0].weight.detach(), model.decoders["x"].body[0].bias.detach()
    precision = float(w.T @ w) / s2  # of the expert q(z|x) / p(z)
    head = model.encoders["x"].head.linear
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0] = w[:, 0] / (s2 * precision)
        head.bias[0] = -(w[:, 0] @ b) / (s2 * precision)
        head.bias[1] = math.log(math.expm1(1 / precision - 1e-4))
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    exact = torch.distributions.MultivariateNormal(b, w @ w.T + s2 * torch.eye(2)).log_prob(x)
    estimate = model.log_likelihood(pm.Batch.from_data(schema, {"x": x}), n_samples=50, chunk=20)
    torch.testing.assert_close(estimate, exact, atol=1e-4, rtol=0)


def test_predict_rejects_target_among_inputs():
    batch = tabular(4)
    model = pm.MVAE(batch.schema, latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="target 'c'"):
        model.predict(batch, "c", ["a", "c"])


def test_unknown_config_key_and_weight_raise():
    schema = tabular(2).schema
    with pytest.raises(pm.ConfigError, match="latent_dims"):
        pm.MVAE(schema, latent_dims=3)
    with pytest.raises(pm.ConfigError, match="'z'"):
        pm.MVAE(schema, weights={"z": 2.0})


@pytest.mark.slow
def test_mvae_learns_digits_with_a_fixed_seed():
    train, test = pm.load_digits()
    model = pm.MVAE(train.schema, latent_dim=16, hidden=(128,), weights={"label": 50.0}, cross=True)
    history = pm.Trainer(model, epochs=25, batch_size=64, kl_warmup=5, seed=0, progress=False).fit(train, test)
    assert history[-1]["valid_loss"] < 0.7 * history[0]["valid_loss"]
    scores = cross_modal(model, test)
    assert scores["label_accuracy_from_image"] > 0.85
    assert scores["image_mse_from_label"] < 0.08


def test_paired_split_digits_shapes():
    train, _ = pm.load_digits(paired=0.1)
    presence = train.presence().numpy()
    both = presence.all(0)
    assert abs(both.sum() - round(0.1 * len(train))) == 0
    assert np.all(presence.sum(0) >= 1)


def test_cross_scores_every_observed_modality_under_each_subset_posterior():
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (2,))])
    g = torch.Generator().manual_seed(0)
    batch = pm.Batch.from_data(schema, {"a": torch.randn(6, 3, generator=g), "b": torch.randn(6, 2, generator=g)})
    for cross in (False, True):
        model = pm.MVAE(schema, latent_dim=2, hidden=(8,), subsets=0, cross=cross, weights={})
        torch.manual_seed(0)
        recon = model.loss(batch).terms["recon"]
        torch.manual_seed(0)
        subsets = model.subsets()  # joint, {a}, {b}
        z = model.posterior(model.experts(batch), subsets[:, :, None] & batch.presence()).rsample()
        decoded = model.decode(z)
        scored = torch.ones_like(subsets) if cross else subsets
        expected = sum(
            (decoded[name].log_prob(batch.values[name]) * scored[:, m, None]).sum(0) for m, name in enumerate(schema.names)
        ).mean()
        torch.testing.assert_close(recon, expected.detach())
