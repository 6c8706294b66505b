"""Shared pieces of the JMVAE, MVTCAE and MMVAE+ tests: encoders and decoders fixed to known
linear maps with the terms of their objectives written with torch.distributions, a loss
checked per sample on a batch of mixed availability, the digits smoke and threshold runs, and
a ``polymodal fit`` run of a model named in a run config. What every model must do is checked
in tests/test_contract.py."""

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from torch.distributions import Normal, kl_divergence

import polymodal as pm
from polymodal.cli import main


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


def first_and_last_losses(build, epochs: int = 4) -> tuple[float, float]:
    """A short fit on the digits (half of them paired), seed 0: the first and last epoch's mean loss."""
    train, _ = pm.load_digits(paired=0.5)
    torch.manual_seed(0)
    history = pm.Trainer(build(train.schema), epochs=epochs, batch_size=64, progress=False).fit(train)
    return history[0]["loss"], history[-1]["loss"]


def label_accuracy_from_image(build, epochs: int) -> float:
    """Label accuracy from the image alone on the digits test split, after ``epochs`` on the
    training split with half the samples paired (seed 0; chance is 0.1)."""
    train, test = pm.load_digits(paired=0.5)
    torch.manual_seed(0)
    model = build(train.schema)
    pm.Trainer(model, epochs=epochs, batch_size=64, progress=False).fit(train)
    return pm.metrics.accuracy(model.predict(test, "label", ["image"]), test.values["label"])


def fit_from_config(tmp_path, name: str, options: dict) -> pm.Model:
    """``polymodal fit`` of a run config naming model ``name`` on a small table with holes
    (two classes over four columns); returns the run's saved model."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 160)
    frame = pd.DataFrame(rng.normal(size=(160, 4)) * 0.5 + 3.0 * label[:, None], columns=["a", "b", "c", "d"])
    frame["kind"] = np.where(label == 1, "high", "low")
    frame = frame.mask(rng.random(frame.shape) < 0.15)
    frame.to_csv(tmp_path / "train.csv", index_label="id")
    config = {"data": {"train": "train.csv"}, "model": {"name": name, "options": options},
              "trainer": {"epochs": 3, "batch_size": 32, "progress": False}, "evaluate": {"samples": 5}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    main(["fit", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), "--quiet"])
    assert (tmp_path / "run" / "scores.json").is_file()
    return pm.load(tmp_path / "run" / "model")
