import math

import torch
from model_checks import (
    LinearDecoder,
    LinearExpert,
    check_loss_is_per_sample,
    linear_batch,
    log_normal,
    random_map,
)

import polymodal as pm

K = 3


def linear_mmvaeplus(gradient="iwae"):
    """Two Gaussian modalities, shared z of 2 dimensions, private w_m of 2; every network a
    known linear map (encoders to (z, w_m), decoders from (z, w_m))."""
    model = pm.MMVAEPlus(linear_batch().schema, latent_dim=2, private_dim=2, hidden=(8,), samples=K, gradient=gradient,
                         weights={"b": 2.0})
    model.encoders["a"] = LinearExpert(random_map(2, 4, 1), torch.tensor([0.5, 2.0, 0.7, 1.2]))
    model.encoders["b"] = LinearExpert(random_map(3, 4, 2), torch.tensor([1.5, 0.3, 0.4, 0.9]))
    model.decoders["a"], model.decoders["b"] = LinearDecoder(random_map(4, 2, 4)), LinearDecoder(random_map(4, 3, 5))
    with torch.no_grad():
        model.auxiliary.copy_(torch.tensor([[0.3, -0.3], [-1.0, 0.5]]))
    return model


def hand_bound(model, batch, use, beta):
    """The looser bound of each sample, written term by term with the noise of seed 1, drawn
    in the model's order: the K shared draws of every modality, then the private ones, then
    the auxiliary ones."""
    names, n = ["a", "b"], len(batch)
    torch.manual_seed(1)
    eps_z, eps_w, eps_aux = torch.randn(K, 2, n, 2), torch.randn(K, 2, n, 2), torch.randn(K, 2, 2, n, 2)
    q = {m: model.encoders[m](batch.values[m]) for m in names}
    shared = {m: pm.Gaussian(q[m].mean[:, :2], q[m].var[:, :2]) for m in names}
    private = {m: pm.Gaussian(q[m].mean[:, 2:], q[m].var[:, 2:]) for m in names}
    scale = 2 * torch.softmax(model.auxiliary.detach(), -1) + 1e-6  # s_m of r_m
    lam = {"a": 1.0, "b": 2.0}
    bounds = []
    for i, m in enumerate(names):
        z = shared[m].mean + eps_z[:, i] * shared[m].std
        w = private[m].mean + eps_w[:, i] * private[m].std
        log_w = beta * (log_normal(z, 0.0) + log_normal(w, 0.0) - private[m].log_prob(w))
        mixture = sum(use[j] * shared[o].log_prob(z).exp() for j, o in enumerate(names)) / use.sum(0)
        log_w = log_w - beta * mixture.log()
        for j, o in enumerate(names):
            w_o = w if o == m else eps_aux[:, i, j] * scale[j]  # another modality's private latent: a draw of r_o
            recon = log_normal(batch.values[o], torch.cat([z, w_o], -1) @ model.decoders[o].w)
            log_w = log_w + use[j] * lam[o] * recon
        bounds.append(torch.logsumexp(log_w, 0) - math.log(K))
    bounds = torch.stack(bounds)
    return torch.where(use, bounds, 0.0).sum(0) / use.sum(0).clamp_min(1)


def test_the_looser_iwae_bound_term_by_term():
    batch = linear_batch(4)
    model = linear_mmvaeplus()
    torch.manual_seed(1)
    out = model.loss(batch, beta=0.8)
    torch.testing.assert_close(out.loss, -hand_bound(model, batch, torch.ones(2, 4, dtype=torch.bool), 0.8).mean())


def test_a_missing_modality_leaves_the_mixture_the_mean_and_every_weight():
    # sample 0 complete, 1 only a, 2 only b, 3 nothing
    use = torch.tensor([[True, True, False, False], [True, False, True, False]])
    batch = linear_batch(4).with_observed({"a": use[0, :, None], "b": use[1, :, None]})
    model = linear_mmvaeplus()
    torch.manual_seed(1)
    out = model.loss(batch, beta=1.0)
    expected = hand_bound(model, batch, use, 1.0)
    assert float(expected[3]) == 0.0
    torch.testing.assert_close(out.loss, -expected.mean())


def test_encode_moment_matches_the_mixture_and_gives_a_missing_modality_its_private_prior():
    batch = linear_batch(3)
    model = linear_mmvaeplus()
    qa, qb = model.encoders["a"](batch.values["a"]), model.encoders["b"](batch.values["b"])
    q = model.encode(batch)
    assert q.mean.shape == (3, 2 + 2 * 2) and model.latent_size == 6
    mean = (qa.mean[:, :2] + qb.mean[:, :2]) / 2
    torch.testing.assert_close(q.mean[:, :2], mean)
    torch.testing.assert_close(q.var[:, :2], (qa.var[:, :2] + qa.mean[:, :2] ** 2 + qb.var[:, :2] + qb.mean[:, :2] ** 2) / 2
                               - mean**2)
    torch.testing.assert_close(q.mean[:, 2:], torch.cat([qa.mean[:, 2:], qb.mean[:, 2:]], -1))
    only_a = model.encode(batch.without("b"))
    torch.testing.assert_close(only_a.mean, torch.cat([qa.mean, torch.zeros(3, 2)], -1))
    torch.testing.assert_close(only_a.var, torch.cat([qa.var, torch.ones(3, 2)], -1))
    # predicting b from a decodes b from a's shared latent and b's private prior mean, 0
    predicted = model.predict(batch, "b", ["a"])
    torch.testing.assert_close(predicted, torch.cat([qa.mean[:, :2], torch.zeros(3, 2)], -1) @ model.decoders["b"].w)


class _ExactPosterior(torch.nn.Module):
    """q(z, w | x) = N(x / 2 + offset, exp(log_var) / 2) N(shift, exp(log_var_w)): the exact
    posterior of p(z) p(w) = N(0, I), p(x | z, w) = N(x; z, 1) at zero parameters."""

    def __init__(self):
        super().__init__()
        self.params = torch.nn.Parameter(torch.zeros(4))

    def forward(self, x):
        offset, log_var, shift, log_var_w = self.params
        return pm.Gaussian(torch.cat([x / 2 + offset, torch.zeros_like(x) + shift], -1),
                           torch.cat([(log_var.exp() / 2).expand_as(x), log_var_w.exp().expand_as(x)], -1))


class _Shared(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, zw):
        return (self.gain * zw[..., :1]).unsqueeze(-1)


def _gradients(gradient):
    batch = pm.Batch.from_data(pm.Schema([pm.Modality("a", (1,))]), {"a": torch.linspace(-2, 2, 7)[:, None]})
    model = pm.MMVAEPlus(batch.schema, latent_dim=1, private_dim=1, samples=5, gradient=gradient)
    model.encoders["a"], model.decoders["a"] = _ExactPosterior(), _Shared()
    torch.manual_seed(3)
    loss = model.loss(batch).loss
    loss.backward()
    return loss.detach(), model.encoders["a"].params.grad, model.decoders["a"].gain.grad


def test_dreg_reports_the_bound_gives_the_decoder_the_iwae_gradient_and_the_exact_posterior_none():
    iwae_loss, iwae_encoder, iwae_decoder = _gradients("iwae")
    dreg_loss, dreg_encoder, dreg_decoder = _gradients("dreg")
    torch.testing.assert_close(dreg_loss, iwae_loss)
    torch.testing.assert_close(dreg_decoder, iwae_decoder)
    torch.testing.assert_close(dreg_encoder, torch.zeros(4), atol=1e-6, rtol=0)  # log w is constant in (z, w) there
    assert float(iwae_encoder.abs().max()) > 1e-3  # the IWAE score term is not


def test_the_auxiliary_priors_learn_under_dreg():
    batch = linear_batch(4)
    model = pm.MMVAEPlus(batch.schema, latent_dim=2, private_dim=2, hidden=(8,), samples=K)
    model.loss(batch).loss.backward()
    assert float(model.auxiliary.grad.abs().max()) > 0


def test_the_loss_of_a_mixed_batch_is_the_mean_of_each_samples(monkeypatch):
    check_loss_is_per_sample(lambda s: pm.MMVAEPlus(s, latent_dim=3, private_dim=2, hidden=(16,), samples=3), monkeypatch)

