import pytest
import torch

import polymodal as pm
from polymodal import metrics
from polymodal.gaussian import log_mean_exp
from polymodal.models import mmvae


def tiny(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (), "categorical", num_classes=3)])
    return pm.Batch.from_data(schema, {"a": torch.randn(n, 3, generator=g), "b": torch.randint(0, 3, (n,), generator=g)})


def test_a_sample_with_one_modality_scores_that_modalitys_iwae_bound():
    torch.manual_seed(0)
    batch = tiny(5).without("b")
    model = pm.MMVAE(batch.schema, latent_dim=2, hidden=(8,), samples=4)
    torch.manual_seed(1)
    loss = model.loss(batch).loss
    torch.manual_seed(1)
    q = model.encoders["a"](batch.values["a"])
    eps = torch.randn(4, 2, 5, 2)[:, 0]  # the draws of component a
    z = q.mean + eps * q.std
    log_px = model.decode(z)["a"].log_prob(batch.values["a"])
    bound = log_mean_exp(model.prior((4, 5)).log_prob(z) + log_px - q.log_prob(z), 0)
    torch.testing.assert_close(loss, -bound.mean())


def test_decoding_components_together_or_apart_gives_the_same_loss_and_gradient(monkeypatch):
    torch.manual_seed(0)
    batch = tiny(4).with_observed({"b": torch.tensor([True, False, True, True])})
    model = pm.MMVAE(batch.schema, latent_dim=2, hidden=(8,), samples=2)

    def loss_and_grads(rows):
        monkeypatch.setattr(mmvae, "DECODE_ROWS", rows)
        torch.manual_seed(1)
        loss = model.loss(batch).loss
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    (loss, grads), (apart, apart_grads) = loss_and_grads(1000), loss_and_grads(0)
    torch.testing.assert_close(loss, apart)
    for a, b in zip(grads, apart_grads):
        torch.testing.assert_close(a, b)


def test_two_modalities_use_the_whole_mixture_in_the_denominator():
    torch.manual_seed(0)
    batch = tiny(3)
    model = pm.MMVAE(batch.schema, latent_dim=2, hidden=(8,), samples=2)
    experts = model.experts(batch)
    z = torch.randn(3, 2)
    by_hand = torch.log((experts[0].log_prob(z).exp() + experts[1].log_prob(z).exp()) / 2)
    torch.testing.assert_close(model.proposal(batch).log_prob(z), by_hand)
    only_a = model.proposal(batch.without("b")).log_prob(z)
    torch.testing.assert_close(only_a, experts[0].log_prob(z))


def test_encode_and_importance_sampling():
    batch = tiny(4)
    model = pm.MMVAE(batch.schema, latent_dim=2, hidden=(8,))
    q = model.encoders["a"](batch.values["a"])
    alone = model.encode(batch.without("b"))
    torch.testing.assert_close(alone.mean, q.mean)
    torch.testing.assert_close(alone.var, q.var)
    nothing = model.encode(batch.without("a", "b"))
    torch.testing.assert_close(nothing.var, torch.ones(4, 2))
    mixed = pm.missing.paired_split(batch, 0.5, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(model.log_likelihood(mixed, n_samples=30)).all())
    assert bool(torch.isfinite(model.loss(mixed).loss))


@pytest.mark.slow
@pytest.mark.parametrize("build", [lambda s: pm.MMVAE(s, latent_dim=8, hidden=(64,), samples=4, weights={"label": 20.0}),
                                   lambda s: pm.MMVAE(s, latent_dim=8, hidden=(64,), samples=4, weights={"label": 20.0},
                                                      gradient="dreg"),
                                   lambda s: pm.MoPoE(s, latent_dim=8, hidden=(64,), weights={"label": 20.0})],
                         ids=["mmvae", "mmvae-dreg", "mopoe"])
def test_baselines_learn_label_from_image_on_partially_paired_digits(build, tmp_path):
    torch.manual_seed(0)
    train, test = pm.load_digits(paired=0.5)
    model = build(train.schema)
    pm.Trainer(model, epochs=15, batch_size=64, progress=False).fit(train)
    assert metrics.accuracy(model.predict(test, "label", ["image"]), test.values["label"]) > 0.5  # chance: 0.1
    model.save(tmp_path / "m")
    torch.testing.assert_close(pm.load(tmp_path / "m").embed(test), model.embed(test))


class _ExactPosterior(torch.nn.Module):
    """q(z | x) = N(x / 2 + offset, exp(log_var) / 2): the exact posterior of p(z) = N(0, 1),
    p(x | z) = N(x; z, 1) at offset = log_var = 0."""

    def __init__(self):
        super().__init__()
        self.offset, self.log_var = torch.nn.Parameter(torch.zeros(())), torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return pm.Gaussian(x / 2 + self.offset, (self.log_var.exp() / 2).expand_as(x))


class _Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, z):
        return (self.gain * z).unsqueeze(-1)


def _gradients(gradient):
    batch = pm.Batch.from_data(pm.Schema([pm.Modality("a", (1,))]), {"a": torch.linspace(-2, 2, 7)[:, None]})
    model = pm.MMVAE(batch.schema, latent_dim=1, samples=5, gradient=gradient)
    model.encoders["a"], model.decoders["a"] = _ExactPosterior(), _Scaled()
    torch.manual_seed(3)
    loss = model.loss(batch).loss
    loss.backward()
    encoder = torch.stack([model.encoders["a"].offset.grad, model.encoders["a"].log_var.grad])
    return loss.detach(), encoder, model.decoders["a"].gain.grad


def test_dreg_reports_the_bound_gives_the_decoder_the_iwae_gradient_and_the_exact_posterior_none():
    iwae_loss, iwae_encoder, iwae_decoder = _gradients("iwae")
    dreg_loss, dreg_encoder, dreg_decoder = _gradients("dreg")
    torch.testing.assert_close(dreg_loss, iwae_loss)
    torch.testing.assert_close(dreg_decoder, iwae_decoder)
    torch.testing.assert_close(dreg_encoder, torch.zeros(2), atol=1e-6, rtol=0)  # log w is constant in z there
    assert float(iwae_encoder.abs().max()) > 1e-3  # the IWAE score term is not


def test_the_gradient_option_is_checked():
    with pytest.raises(pm.ConfigError, match="gradient must be one of"):
        pm.MMVAE(tiny().schema, gradient="drg")
