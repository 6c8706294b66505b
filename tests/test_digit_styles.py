import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier

import polymodal as pm
from polymodal.datasets.digit_styles import print_features, render_prints
from polymodal.report import plot_pairs


@pytest.fixture(scope="module")
def styles():
    return pm.load_digit_styles()


def test_shapes_ranges_and_the_digits_split(styles):
    train, test, y_train, y_test = styles
    assert train.schema.names == ["hand", "print"]
    assert train.values["hand"].shape == (1437, 8, 8) and test.values["print"].shape == (360, 3, 16, 16)
    for batch in (train, test):
        for x in batch.values.values():
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert bool(batch.presence().all())
    digits, digits_test = pm.load_digits()
    torch.testing.assert_close(train.values["hand"], digits.values["image"])  # the same images in the same order
    assert torch.equal(y_train, digits.values["label"]) and torch.equal(y_test, digits_test.values["label"])


def test_prints_are_deterministic_and_vary():
    labels = torch.tensor([3, 3, 7])
    a, b = render_prints(labels, seed=1), render_prints(labels, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, render_prints(labels, seed=2))
    assert (a[0] - a[1]).abs().mean() > 0.05  # two prints of one class differ (font, colours, pose)


def test_prints_carry_their_class(styles):
    # a linear classifier on the print features recognises the class far above chance (0.1)
    train, test, y_train, y_test = styles
    clf = RidgeClassifier().fit(print_features(train.values["print"]).numpy(), y_train.numpy())
    assert clf.score(print_features(test.values["print"]).numpy(), y_test.numpy()) > 0.7


def test_partial_pairing_splits_the_rest_into_equal_single_style_pools():
    train, test, _, _ = pm.load_digit_styles(paired=0.25, seed=3)
    hand, printed = train.present("hand"), train.present("print")
    n_paired = int((hand & printed).sum())
    assert n_paired == round(0.25 * len(train))
    assert bool((hand | printed).all())
    assert abs(int((hand & ~printed).sum()) - int((printed & ~hand).sum())) <= 1
    assert bool(test.presence().all())
    other, _, _, _ = pm.load_digit_styles(paired=0.25, seed=4)
    assert not torch.equal(other.present("hand"), hand)


def test_label_modality_is_observed_everywhere():
    train, _, y_train, _ = pm.load_digit_styles(paired=0.5, label=True)
    assert train.schema.names == ["hand", "print", "label"]
    assert bool(train.present("label").all()) and torch.equal(train.values["label"], y_train)
    assert int((train.present("hand") & train.present("print")).sum()) == round(0.5 * len(train))


def test_picture_of_ten_pairs_per_class(styles, tmp_path):
    _, test, _, y_test = styles
    path = plot_pairs(test, y_test, tmp_path / "digit_styles.png")
    image = np.asarray(__import__("matplotlib.image", fromlist=["imread"]).imread(path))
    assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 0.1
