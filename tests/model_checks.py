"""Shared pieces of the JMVAE, MVTCAE and MMVAE+ tests: encoders and decoders fixed to known
linear maps with the terms of their objectives written with torch.distributions and a loss
checked per sample on a batch of mixed availability. What every model must do is checked in
tests/test_contract.py; the models on data in tests/test_new_models_on_data.py."""

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

import polymodal as pm


def linear_schema() -> pm.Schema:
    """Two Gaussian modalities (unit scale): ``a`` of 2 features, ``b`` of 3."""
    return pm.Schema([pm.Modality("a", (2,)), pm.Modality("b", (3,))])


def linear_batch(n: int = 4, seed: int = 0) -> pm.Batch:
    g = torch.Generator().manual_seed(seed)
    return pm.Batch.from_data(linear_schema(), {"a": torch.randn(n, 2, generator=g), "b": torch.randn(n, 3, generator=g)})


class LinearExpert(nn.Module):
    """x -> N(x A, diag(var)): an encoder fixed to a known linear map."""

    def __init__(self, a: torch.Tensor, var: torch.Tensor):
        super().__init__()
        self.a, self.var = nn.Parameter(a, requires_grad=False), var

    def forward(self, x: torch.Tensor) -> pm.Gaussian:
        mean = x @ self.a
        return pm.Gaussian(mean, self.var.expand_as(mean))


class LinearDecoder(nn.Module):
    """z -> the mean z W of a unit-scale Gaussian likelihood."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.w).unsqueeze(-1)


def random_map(rows: int, columns: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed))


def log_normal(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor | float = 1.0) -> torch.Tensor:
    """log N(x; mean, diag(var)) summed over the last axis."""
    return Normal(mean, torch.as_tensor(var).sqrt()).log_prob(x).sum(-1)


def kl(p: pm.Gaussian, q: pm.Gaussian) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the last axis."""
    return kl_divergence(Normal(p.mean, p.std), Normal(q.mean, q.std)).sum(-1)


def tabular(n: int = 8, seed: int = 0) -> pm.Batch:
    """Three modalities of each kind a model meets in a table: vector, vector, categorical."""
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("a", (3,)), pm.Modality("b", (4,)), pm.Modality("c", (), "categorical", num_classes=3)])
    data = {"a": torch.randn(n, 3, generator=g), "b": torch.randn(n, 4, generator=g), "c": torch.randint(0, 3, (n,), generator=g)}
    return pm.Batch.from_data(schema, data)


def mixed(n: int = 8) -> pm.Batch:
    """A batch in which samples have different modalities, one has nothing, and one has a
    modality with some of its features missing."""
    batch = pm.missing.drop_modalities(tabular(n), 0.4, torch.Generator().manual_seed(1))
    a = batch.observed["a"].clone()
    a[0] = False
    b = batch.observed["b"].clone()
    b[0] = False
    b[1, :2] = False
    c = batch.observed["c"].clone()
    c[0] = False
    return batch.with_observed({"a": a, "b": b, "c": c})


def check_loss_is_per_sample(build, monkeypatch) -> None:
    """On a batch of mixed availability, the loss and each of its terms are the mean of each
    sample's alone (sampling noise set to zero, so that the loss is a function of the data)."""
    batch = mixed()
    torch.manual_seed(0)
    model = build(batch.schema)
    monkeypatch.setattr(torch, "randn", lambda *shape, **kw: torch.zeros(*shape, **kw))
    together = model.loss(batch)
    alone = [model.loss(batch.select([i])) for i in range(len(batch))]
    torch.testing.assert_close(together.loss, torch.stack([one.loss for one in alone]).mean())
    for name, value in together.terms.items():
        torch.testing.assert_close(value, torch.stack([one.terms[name] for one in alone]).mean())

