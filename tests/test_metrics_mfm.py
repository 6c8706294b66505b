import math

import numpy as np
import pytest
import torch

from polymodal import metrics


def test_mmd_matches_a_hand_computation():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, 2.0]])
    # d = 2, bandwidth d^2 = 4; squared distances: xx {0, 1}, yy {0}, xy {4, 5}
    k_xx = (2 * 1 + 2 * math.exp(-1 / 4)) / 4
    k_yy = 1.0
    k_xy = (math.exp(-4 / 4) + math.exp(-5 / 4)) / 2
    assert float(metrics.mmd(x, y)) == pytest.approx(k_xx + k_yy - 2 * k_xy, rel=1e-6)
    wide = (2 + 2 * math.exp(-1 / 10)) / 4 + 1 - (math.exp(-4 / 10) + math.exp(-5 / 10))
    assert float(metrics.mmd(x, y, bandwidth=10.0)) == pytest.approx(wide, rel=1e-6)


def test_mmd_is_zero_for_identical_samples_and_small_for_one_distribution():
    torch.manual_seed(0)
    x = torch.randn(200, 3)
    assert float(metrics.mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    same = float(metrics.mmd(x, torch.randn(200, 3)))
    shifted = float(metrics.mmd(x, torch.randn(200, 3) + 2.0))
    assert 0 <= same < 0.02 < shifted


def test_mmd_refuses_bad_shapes_and_bandwidths():
    with pytest.raises(ValueError, match="mmd"):
        metrics.mmd(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="bandwidth"):
        metrics.mmd(torch.zeros(3, 2), torch.zeros(3, 2), bandwidth=0.0)


def test_macro_f1_by_hand():
    predicted, target = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1])
    # class 0: tp 1, fp 1, fn 0 -> 2/3; class 1: tp 1, fp 0, fn 2 -> 2/4; class 2: tp 0, fp 1 -> 0
    assert metrics.macro_f1(predicted, target) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert metrics.macro_f1(predicted, target, classes=4) == pytest.approx((2 / 3 + 1 / 2) / 4)
    assert metrics.macro_f1(target, target) == 1.0
