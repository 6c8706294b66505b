import math

import numpy as np
import torch

import polymodal as pm
from polymodal import metrics


class Generator:
    """A stand-in model whose cross generations are known: the source's values plus one."""

    def predict(self, batch, target, inputs, proba=False):
        assert proba and inputs == ["a"]
        return batch.values["a"] + 1.0


class Sign:
    """A classifier that reads the first feature: class 1 if positive."""

    def predict(self, x):
        return (x[:, 0] > 0).astype(np.int64)


def test_cross_coherence_counts_generations_classified_as_the_source_label():
    schema = pm.Schema([pm.Modality("a", (2,)), pm.Modality("b", (2,))])
    batch = pm.Batch.from_data(schema, {"a": [[-3.0, 0.0], [-0.5, 0.0], [2.0, 0.0], [-2.0, 0.0]]})
    labels = torch.tensor([0, 1, 1, 1])  # generated first features: -2, 0.5, 3, -1 -> classes 0, 1, 1, 0
    assert metrics.cross_coherence(Generator(), batch, "a", "b", labels, Sign()) == 0.75
    flipped = metrics.cross_coherence(Generator(), batch, "a", "b", labels, Sign(), features=lambda x: -x)
    assert flipped == 0.25


def test_posterior_w2_is_the_diagonal_closed_form():
    class Encoder:
        def encode(self, batch):
            a, b = batch.present("a"), batch.present("b")
            mean = torch.where(a[:, None], batch.values["a"], batch.values["b"])
            var = torch.where(a[:, None] & ~b[:, None], torch.full_like(mean, 4.0), torch.ones_like(mean))
            return pm.Gaussian(mean, var)

    schema = pm.Schema([pm.Modality("a", (1,)), pm.Modality("b", (1,))])
    batch = pm.Batch.from_data(schema, {"a": [[0.0], [3.0]], "b": [[1.0], [3.0]]})
    d = metrics.posterior_w2(Encoder(), batch, "a", "b")
    # q(z|a_i) = N(a_i, 4), q(z|b_j) = N(b_j, 1): W2^2 = (a_i - b_j)^2 + (2 - 1)^2
    expected = torch.tensor([[math.sqrt(1 + 1), math.sqrt(9 + 1)], [math.sqrt(4 + 1), math.sqrt(0 + 1)]])
    torch.testing.assert_close(d, expected)
    split = metrics.relatedness(d)
    assert abs(split["paired_mean"] - (math.sqrt(2) + 1) / 2) < 1e-6
    assert abs(split["unpaired_mean"] - (math.sqrt(10) + math.sqrt(5)) / 2) < 1e-6


def test_class_distances_average_over_the_class_pairs():
    d = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    k = metrics.class_distances(d, torch.tensor([0, 0, 1]), torch.tensor([1, 0, 1]), 3)
    # class 0 rows {0, 1}, class 1 row {2}; class 0 column {1}, class 1 columns {0, 2}
    assert k[0, 0] == (2 + 5) / 2 and k[0, 1] == (1 + 3 + 4 + 6) / 4
    assert k[1, 0] == 8 and k[1, 1] == (7 + 9) / 2
    assert torch.isnan(k[2]).all() and torch.isnan(k[:, 2]).all()


def test_latent_accuracy_probes_each_modality_alone():
    class Embedder:
        schema = pm.Schema([pm.Modality("a", (1,)), pm.Modality("b", (1,))])

        def embed(self, batch):
            # modality a alone carries the class; b alone carries nothing
            assert int(batch.presence().sum(0).max()) == 1
            return torch.where(batch.present("a")[:, None], batch.values["a"], torch.zeros(len(batch), 1))

    labels = torch.tensor([0, 1] * 20)
    a = labels[:, None].float() * 2 - 1
    batch = pm.Batch.from_data(Embedder.schema, {"a": a, "b": torch.randn(40, 1)})
    scores = metrics.latent_accuracy(Embedder(), batch, batch, labels, labels)
    assert scores == {"a": 1.0, "b": 0.5}


def test_relatedness_plot_is_written(tmp_path):
    from polymodal.report import plot_relatedness

    labels = torch.arange(30) % 3
    distances = 1.0 + (labels[:, None] != labels[None, :]).float() + 0.1 * torch.rand(30, 30)
    path = plot_relatedness(distances, labels, labels, tmp_path / "relatedness.png", names=("hand", "print"))
    assert path.stat().st_size > 10_000
