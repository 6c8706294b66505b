import torch
from model_checks import (
    LinearDecoder,
    LinearExpert,
    check_loss_is_per_sample,
    kl,
    linear_batch,
    log_normal,
    mixed,
    random_map,
)

import polymodal as pm


def linear_jmvae(alpha=0.3):
    """JMVAE on two Gaussian modalities with every network a known linear map; the joint
    encoder reads (x_a, x_b) side by side."""
    model = pm.JMVAE(linear_batch().schema, latent_dim=2, hidden=(8,), alpha=alpha, weights={"b": 2.0})
    model.encoders["a"] = LinearExpert(random_map(2, 2, 1), torch.tensor([0.5, 2.0]))
    model.encoders["b"] = LinearExpert(random_map(3, 2, 2), torch.tensor([1.5, 0.3]))
    joint = LinearExpert(random_map(5, 2, 3), torch.tensor([0.2, 0.4]))
    model.joint = lambda batch: joint(torch.cat([batch.values["a"], batch.values["b"]], -1))
    model.decoders["a"], model.decoders["b"] = LinearDecoder(random_map(2, 2, 4)), LinearDecoder(random_map(2, 3, 5))
    return model


def test_each_term_of_jmvae_kl_on_complete_samples():
    batch = linear_batch(4)
    model = linear_jmvae()
    torch.manual_seed(1)
    out = model.loss(batch, beta=0.7)
    q, qa, qb = model.joint(batch), model.encoders["a"](batch.values["a"]), model.encoders["b"](batch.values["b"])
    torch.manual_seed(1)
    z = q.mean + torch.randn(4, 2) * q.std
    recon = log_normal(batch.values["a"], z @ model.decoders["a"].w)
    recon = recon + 2.0 * log_normal(batch.values["b"], z @ model.decoders["b"].w)
    prior = kl(q, pm.Gaussian(torch.zeros(4, 2), torch.ones(4, 2)))
    pull = kl(q, qa) + kl(q, qb)
    torch.testing.assert_close(out.terms["recon"], recon.mean())
    torch.testing.assert_close(out.terms["kl"], prior.mean())
    torch.testing.assert_close(out.terms["kl_unimodal"], pull.mean())
    torch.testing.assert_close(out.loss, -(recon - 0.7 * (prior + 0.3 * pull)).mean())


def test_an_incomplete_sample_scores_the_elbo_of_its_unimodal_posterior():
    # sample 0 complete, 1 only a, 2 only b, 3 nothing
    batch = linear_batch(4).with_observed({"a": torch.tensor([True, True, False, False])[:, None],
                                           "b": torch.tensor([True, False, True, False])[:, None]})
    model = linear_jmvae()
    torch.manual_seed(1)
    out = model.loss(batch, beta=0.5)
    joint, qa, qb = model.joint(batch), model.encoders["a"](batch.values["a"]), model.encoders["b"](batch.values["b"])
    q = pm.Gaussian(torch.stack([joint.mean[0], qa.mean[1], qb.mean[2], torch.zeros(2)]),
                    torch.stack([joint.var[0], qa.var[1], qb.var[2], torch.ones(2)]))
    torch.manual_seed(1)
    z = q.mean + torch.randn(4, 2) * q.std
    ra = log_normal(batch.values["a"], z @ model.decoders["a"].w) * torch.tensor([1.0, 1, 0, 0])
    rb = 2.0 * log_normal(batch.values["b"], z @ model.decoders["b"].w) * torch.tensor([1.0, 0, 1, 0])
    prior = kl(q, pm.Gaussian(torch.zeros(4, 2), torch.ones(4, 2)))
    pull = (kl(joint, qa) + kl(joint, qb)) * torch.tensor([1.0, 0, 0, 0])
    assert float(prior[3]) == 0.0
    torch.testing.assert_close(out.terms["kl_unimodal"], pull.mean())
    torch.testing.assert_close(out.loss, -(ra + rb - 0.5 * (prior + 0.3 * pull)).mean())


def test_a_subset_of_modalities_is_the_product_of_their_experts_without_the_prior():
    batch = mixed()
    model = pm.JMVAE(batch.schema, latent_dim=2, hidden=(8,))
    full = batch.select([2, 3]).with_observed({"a": torch.ones(2, 3), "b": torch.ones(2, 4), "c": torch.ones(2)})
    qa, qb = model.encoders["a"](full.values["a"]), model.encoders["b"](full.values["b"])
    two = model.encode(full.without("c"))
    precision = 1 / qa.var + 1 / qb.var
    torch.testing.assert_close(two.var, 1 / precision)
    torch.testing.assert_close(two.mean, (qa.mean / qa.var + qb.mean / qb.var) / precision)
    one = model.encode(full.without("b", "c"))
    torch.testing.assert_close(one.mean, qa.mean)
    every = model.encode(full)
    torch.testing.assert_close(every.mean, model.joint(full).mean)


def test_the_loss_of_a_mixed_batch_is_the_mean_of_each_samples(monkeypatch):
    present = mixed().presence()
    assert present.all(0).any() and (present.any(0) & ~present.all(0)).any()  # both branches in one batch
    check_loss_is_per_sample(lambda s: pm.JMVAE(s, latent_dim=3, hidden=(16,), joint_hidden=(16,)), monkeypatch)

