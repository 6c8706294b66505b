import pytest
import torch

import polymodal as pm
from polymodal import metrics
from polymodal.gaussian import log_mean_exp


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


def test_two_modalities_use_the_whole_mixture_in_the_denominator():
    torch.manual_seed(0)
    batch = tiny(3)
    model = pm.MMVAE(batch.schema, latent_dim=2, hidden=(8,), samples=2)
    experts = model.experts(batch)
    z = torch.randn(3, 2)
    by_hand = torch.log((experts[0].log_prob(z).exp() + experts[1].log_prob(z).exp()) / 2)
    torch.testing.assert_close(model.log_mixture(experts, batch.presence(), z), by_hand)
    only_a = model.log_mixture(experts, batch.without("b").presence(), z)
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


@pytest.mark.parametrize("build", [lambda s: pm.MMVAE(s, latent_dim=8, hidden=(64,), samples=4, weights={"label": 20.0}),
                                   lambda s: pm.MoPoE(s, latent_dim=8, hidden=(64,), weights={"label": 20.0})],
                         ids=["mmvae", "mopoe"])
def test_baselines_learn_label_from_image_on_partially_paired_digits(build, tmp_path):
    torch.manual_seed(0)
    train, test = pm.load_digits(paired=0.5)
    model = build(train.schema)
    pm.Trainer(model, epochs=15, batch_size=64, progress=False).fit(train)
    assert metrics.accuracy(model.predict(test, "label", ["image"]), test.values["label"]) > 0.5  # chance: 0.1
    model.save(tmp_path / "m")
    torch.testing.assert_close(pm.load(tmp_path / "m").embed(test), model.embed(test))
