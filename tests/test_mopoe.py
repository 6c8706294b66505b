import torch

import polymodal as pm


def tiny(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (2,)), pm.Modality("c", (), "categorical", num_classes=3)])
    data = {"a": torch.randn(n, 3, generator=g), "b": torch.randn(n, 2, generator=g), "c": torch.randint(0, 3, (n,), generator=g)}
    return pm.Batch.from_data(schema, data)


def test_components_are_the_products_over_each_samples_power_set():
    batch = tiny(2)
    model = pm.MoPoE(batch.schema, latent_dim=2, hidden=(8,))
    mixed = batch.with_observed({"c": torch.tensor([True, False])})  # sample 0 has a, b, c; sample 1 a, b
    q = model.proposal(mixed)
    products, valid = q.components, q.use
    assert model.subsets.shape == (7, 3)
    assert valid[:, 0].all() and int(valid[:, 1].sum()) == 3  # {a}, {b}, {a, b}
    assert not valid[model.subsets[:, 2], 1].any()
    a, b = model.encoders["a"](batch.values["a"]), model.encoders["b"](batch.values["b"])
    both = int(((model.subsets == torch.tensor([True, True, False])).all(1)).nonzero())
    torch.testing.assert_close(products.var[both], 1 / (1 + 1 / a.var + 1 / b.var))
    torch.testing.assert_close(products.mean[both], (a.mean / a.var + b.mean / b.var) * products.var[both])


def test_a_sample_with_one_modality_scores_that_modalitys_elbo():
    torch.manual_seed(0)
    batch = tiny(4).without("b", "c")
    model = pm.MoPoE(batch.schema, latent_dim=2, hidden=(8,))
    torch.manual_seed(1)
    loss = model.loss(batch, beta=0.5).loss
    torch.manual_seed(1)
    q = (model.prior((4,)) * model.encoders["a"](batch.values["a"])).gaussian()
    eps = torch.randn(7, 4, 2)[0]  # the draw of subset {a}, the first
    z = q.mean + eps * q.std
    elbo = model.decode(z)["a"].log_prob(batch.values["a"]) - 0.5 * q.kl(model.prior((4,)))
    torch.testing.assert_close(loss, -elbo.mean())


def test_encode_and_importance_sampling():
    batch = tiny(5)
    model = pm.MoPoE(batch.schema, latent_dim=2, hidden=(8,))
    nothing = model.encode(batch.without("a", "b", "c"))
    torch.testing.assert_close(nothing.var, torch.ones(5, 2))
    mixed = pm.missing.drop_modalities(batch, 0.5, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(model.log_likelihood(mixed, n_samples=30)).all())
    assert bool(torch.isfinite(model.loss(mixed).loss))



def test_the_sampled_mixture_scores_one_component_per_sample():
    torch.manual_seed(0)
    batch = tiny(4).without("b", "c")  # one modality: the only component is {a}
    model = pm.MoPoE(batch.schema, latent_dim=2, hidden=(8,), mixture="sampled")
    torch.manual_seed(1)
    loss = model.loss(batch, beta=0.5).loss
    torch.manual_seed(1)
    torch.multinomial(torch.ones(4, 7), 1, replacement=True)  # the choice of component, drawn first
    q = (model.prior((4,)) * model.encoders["a"](batch.values["a"])).gaussian()
    z = q.mean + torch.randn(1, 4, 2)[0] * q.std
    elbo = model.decode(z)["a"].log_prob(batch.values["a"]) - 0.5 * q.kl(model.prior((4,)))
    torch.testing.assert_close(loss, -elbo.mean())


def test_the_sampled_and_stratified_mixtures_have_the_same_expectation():
    batch = pm.missing.drop_modalities(tiny(3), 0.4, torch.Generator().manual_seed(2))
    stratified = pm.MoPoE(batch.schema, latent_dim=2, hidden=(8,))
    sampled = pm.MoPoE(batch.schema, latent_dim=2, hidden=(8,), mixture="sampled")
    sampled.load_state_dict(stratified.state_dict())
    copies = batch.select(torch.arange(3).repeat(500))  # each loss is then a mean over 500 draws per sample
    torch.manual_seed(0)
    with torch.no_grad():
        a = torch.stack([stratified.loss(copies).loss for _ in range(30)])
        b = torch.stack([sampled.loss(copies).loss for _ in range(30)])
    assert abs(float(a.mean() - b.mean())) < 4 * float((a.var() / 30 + b.var() / 30).sqrt())
    assert float(b.var()) > float(a.var())  # the reason the stratified estimator is the default
