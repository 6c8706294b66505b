import pytest
import torch
from model_checks import (
    LinearDecoder,
    LinearExpert,
    check_loss_is_per_sample,
    kl,
    linear_batch,
    log_normal,
    random_map,
)

import polymodal as pm


def linear_mvtcae(alpha):
    model = pm.MVTCAE(linear_batch().schema, latent_dim=2, hidden=(8,), alpha=alpha, weights={"b": 2.0})
    model.encoders["a"] = LinearExpert(random_map(2, 2, 1), torch.tensor([0.5, 2.0]))
    model.encoders["b"] = LinearExpert(random_map(3, 2, 2), torch.tensor([1.5, 0.3]))
    model.decoders["a"], model.decoders["b"] = LinearDecoder(random_map(2, 2, 4)), LinearDecoder(random_map(2, 3, 5))
    return model


def hand_terms(model, batch, use):
    """The posterior q(z | x_S) of each sample (S given by ``use`` [2, B]), a draw from it with
    the noise of seed 1, and the unweighted terms: sum_m lambda_m log p(x_m | z), KL to the
    prior, sum_m KL(q(z | x_S) || q(z | x_m))."""
    qa, qb = model.encoders["a"](batch.values["a"]), model.encoders["b"](batch.values["b"])
    ua, ub = use.float()[:, :, None]
    precision = ua / qa.var + ub / qb.var
    nothing = precision == 0
    precision = torch.where(nothing, 1.0, precision)  # the prior, for a sample with nothing
    q = pm.Gaussian((ua * qa.mean / qa.var + ub * qb.mean / qb.var) / precision, 1 / precision)
    torch.manual_seed(1)
    z = q.mean + torch.randn(len(batch), 2) * q.std
    recon = use[0] * log_normal(batch.values["a"], z @ model.decoders["a"].w)
    recon = recon + use[1] * 2.0 * log_normal(batch.values["b"], z @ model.decoders["b"].w)
    prior = kl(q, pm.Gaussian(torch.zeros(len(batch), 2), torch.ones(len(batch), 2)))
    conditional = use[0] * kl(q, qa) + use[1] * kl(q, qb)
    return recon, prior, conditional


def test_each_term_of_the_total_correlation_objective():
    batch = linear_batch(4)
    model = linear_mvtcae(alpha=0.6)
    torch.manual_seed(1)
    out = model.loss(batch, beta=2.5)
    recon, prior, conditional = hand_terms(model, batch, torch.ones(2, 4, dtype=torch.bool))
    torch.testing.assert_close(out.terms["recon"], recon.mean())
    torch.testing.assert_close(out.terms["kl"], prior.mean())
    torch.testing.assert_close(out.terms["kl_conditional"], conditional.mean())
    # M = 2: reconstruction (2 - alpha) / 2, prior KL 1 - alpha, each conditional KL alpha / 2
    torch.testing.assert_close(out.loss, -(0.7 * recon - 2.5 * (0.4 * prior + 0.3 * conditional)).mean())


def test_a_sample_is_scored_by_the_objective_of_the_modalities_it_has():
    # sample 0 complete, 1 only a, 2 only b, 3 nothing: M becomes |S| per sample
    use = torch.tensor([[True, True, False, False], [True, False, True, False]])
    batch = linear_batch(4).with_observed({"a": use[0, :, None], "b": use[1, :, None]})
    model = linear_mvtcae(alpha=0.6)
    torch.manual_seed(1)
    out = model.loss(batch, beta=1.0)
    recon, prior, conditional = hand_terms(model, batch, use)
    assert float(conditional[1:].abs().max()) < 1e-6 and float(prior[3]) == 0.0
    m = torch.tensor([2.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(out.loss, -((m - 0.6) / m * recon - (0.4 * prior + 0.6 / m * conditional)).mean())
    # a one-modality sample's loss is (1 - alpha) times its VAE loss
    torch.manual_seed(1)
    alone = model.loss(batch.select([1]), beta=1.0).loss
    torch.manual_seed(1)
    vae = model.loss(batch.select([1]), beta=1.0)
    torch.testing.assert_close(alone, -0.4 * (vae.terms["recon"] - vae.terms["kl"]))


def test_encode_is_the_product_of_the_present_experts_without_the_prior():
    batch = linear_batch(3)
    model = linear_mvtcae(alpha=0.5)
    qa, qb = model.encoders["a"](batch.values["a"]), model.encoders["b"](batch.values["b"])
    q = model.encode(batch)
    torch.testing.assert_close(q.var, 1 / (1 / qa.var + 1 / qb.var))
    torch.testing.assert_close(q.mean, (qa.mean / qa.var + qb.mean / qb.var) * q.var)
    torch.testing.assert_close(model.encode(batch.without("b")).mean, qa.mean)
    torch.testing.assert_close(model.encode(batch.without("a", "b")).var, torch.ones(3, 2))


def test_the_loss_of_a_mixed_batch_is_the_mean_of_each_samples(monkeypatch):
    check_loss_is_per_sample(lambda s: pm.MVTCAE(s, latent_dim=3, hidden=(16,)), monkeypatch)


def test_alpha_is_a_fraction():
    with pytest.raises(pm.ConfigError, match="alpha"):
        pm.MVTCAE(linear_batch().schema, alpha=1.5)

