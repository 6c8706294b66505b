import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal

from polymodal.gaussian import (
    Gaussian,
    NonPositivePrecisionError,
    combine,
    kl_divergence,
    log_mean_exp,
    moment_match,
    stack,
    w2,
)

T = torch.tensor


def random_gaussian(shape, generator):
    mean = torch.randn(shape, generator=generator, dtype=torch.float64)
    var = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 + 0.1
    return Gaussian(mean, var)


def assert_gaussian_close(a, b, **kwargs):
    torch.testing.assert_close(a.mean, b.mean, **kwargs)
    torch.testing.assert_close(a.var, b.var, **kwargs)


# closed forms -----------------------------------------------------------------------


def test_product_of_two_1d_gaussians():
    # N(1, 2) * N(3, 0.5): precision 0.5 + 2 = 2.5, mean (0.5 * 1 + 2 * 3) / 2.5 = 2.6
    out = combine(Gaussian(T([[1.0], [3.0]]), T([[2.0], [0.5]])))
    torch.testing.assert_close(out.var, T([0.4]))
    torch.testing.assert_close(out.mean, T([2.6]))


def test_product_of_diagonal_gaussians_is_per_dimension():
    experts = Gaussian(T([[1.0, -2.0], [3.0, 4.0], [0.0, 0.0]]), T([[2.0, 1.0], [0.5, 1.0], [1.0, 2.0]]))
    out = combine(experts)
    precision = T([0.5 + 2 + 1, 1 + 1 + 0.5])
    torch.testing.assert_close(out.var, 1 / precision)
    torch.testing.assert_close(out.mean, T([0.5 * 1 + 2 * 3, -2.0 + 4.0]) / precision)


def test_quotient_matches_closed_form():
    # N(2, 0.5) / N(1, 2): precision 2 - 0.5 = 1.5, mean (2 * 2 - 0.5 * 1) / 1.5 = 7 / 3
    out = combine(Gaussian(T([[2.0], [1.0]]), T([[0.5], [2.0]])), exponent=T([1.0, -1.0]))
    torch.testing.assert_close(out.var, T([1 / 1.5]))
    torch.testing.assert_close(out.mean, T([7 / 3]))


def test_power_exponent_scales_precision():
    out = combine(Gaussian(T([[1.5, -1.0]]), T([[2.0, 0.5]])), exponent=T([3.0]))
    torch.testing.assert_close(out.var, T([2 / 3, 0.5 / 3]))
    torch.testing.assert_close(out.mean, T([1.5, -1.0]))


@pytest.mark.parametrize("divisor_var", [0.5, 1.0])
def test_quotient_leaving_non_positive_precision_raises(divisor_var):
    experts = Gaussian(T([[0.0, 0.0], [0.0, 0.0]]), T([[1.0, 1.0], [4.0, divisor_var]]))
    with pytest.raises(NonPositivePrecisionError, match="precision is not positive"):
        combine(experts, exponent=T([1.0, -1.0]))
    assert issubclass(NonPositivePrecisionError, ValueError)


def test_mask_leaving_no_expert_raises():
    experts = Gaussian(T([[0.0], [1.0]]), T([[1.0], [2.0]]))
    with pytest.raises(NonPositivePrecisionError, match="left no expert"):
        combine(experts, mask=T([False, False]))


def test_masked_quotient_is_not_checked_against_unmasked_ones():
    experts = Gaussian(T([[0.0], [0.0]]), T([[1.0], [0.5]]))
    # the narrow divisor is masked out, so the quotient is just the first expert
    out = combine(experts, mask=T([True, False]), exponent=T([1.0, -1.0]))
    assert_gaussian_close(out, Gaussian(T([0.0]), T([1.0])))


def test_kl_matches_torch_and_vanishes_on_itself():
    g = torch.Generator().manual_seed(0)
    p, q = random_gaussian((4, 3), g), random_gaussian((4, 3), g)
    expected = torch.distributions.kl_divergence(Normal(p.mean, p.std), Normal(q.mean, q.std)).sum(-1)
    torch.testing.assert_close(kl_divergence(p, q), expected)
    torch.testing.assert_close(p.kl(q), expected)
    torch.testing.assert_close(kl_divergence(p, p), torch.zeros(4, dtype=torch.float64))
    assert (kl_divergence(p, q) > 0).all()


def test_w2_closed_form():
    # 1-D: N(1, 4) vs N(-1, 1): (1 - (-1))^2 + (2 - 1)^2 = 5
    torch.testing.assert_close(w2(Gaussian(T([1.0]), T([4.0])), Gaussian(T([-1.0]), T([1.0]))), T(5.0))
    g = torch.Generator().manual_seed(1)
    p, q = random_gaussian((5, 3), g), random_gaussian((5, 3), g)
    expected = ((p.mean - q.mean) ** 2).sum(-1) + ((p.var.sqrt() - q.var.sqrt()) ** 2).sum(-1)
    torch.testing.assert_close(w2(p, q), expected)
    torch.testing.assert_close(w2(p, p), torch.zeros(5, dtype=torch.float64))


def test_moment_match_uniform_mixture():
    # 0.5 N(0, 1) + 0.5 N(2, 3): mean 1, E[x^2] = (1 + 7) / 2 = 4, var = 3
    out = moment_match(Gaussian(T([[0.0], [2.0]]), T([[1.0], [3.0]])))
    torch.testing.assert_close(out.mean, T([1.0]))
    torch.testing.assert_close(out.var, T([3.0]))


def test_moment_match_weighted_mixture_along_other_axis():
    # 0.25 N(0, 1) + 0.75 N(2, 3): mean 1.5, E[x^2] = 0.25 + 0.75 * 7 = 5.5, var = 3.25
    mixture = Gaussian(T([[[0.0], [2.0]], [[5.0], [5.0]]]), T([[[1.0], [3.0]], [[1.0], [1.0]]]))  # [B=2, K=2, D=1]
    out = moment_match(mixture, weights=T([[0.25, 0.75], [0.5, 0.5]]), dim=1)
    torch.testing.assert_close(out.mean, T([[1.5], [5.0]]))
    torch.testing.assert_close(out.var, T([[3.25], [1.0]]))


def test_log_mean_exp_matches_naive_and_is_stable():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(log_mean_exp(x, 0), x.exp().mean(0).log())
    torch.testing.assert_close(log_mean_exp(x, 1), x.exp().mean(1).log())
    big = T([1000.0, 1000.0 + math.log(3.0)])
    torch.testing.assert_close(log_mean_exp(big), T(1000.0 + math.log(2.0)))
    torch.testing.assert_close(log_mean_exp(T([-1000.0, -1000.0])), T(-1000.0))


def test_log_prob_matches_torch_normal():
    g = torch.Generator().manual_seed(3)
    p = random_gaussian((4, 3), g)
    z = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(p.log_prob(z), Normal(p.mean, p.std).log_prob(z).sum(-1))


def test_rsample_shape_and_moments():
    torch.manual_seed(0)
    p = Gaussian(T([[1.0, -2.0, 0.5]]), T([[0.25, 4.0, 1.0]]))
    z = p.rsample((20000,))
    assert z.shape == (20000, 1, 3)
    torch.testing.assert_close(z.mean(0), p.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), p.var, atol=0, rtol=0.05)
    assert p.sample((2,)).shape == (2, 1, 3)


def test_rsample_is_differentiable():
    mean, logvar = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    Gaussian.from_logvar(mean, logvar).rsample((5,)).sum().backward()
    assert mean.grad is not None and logvar.grad is not None
    torch.testing.assert_close(mean.grad, torch.full((3,), 5.0))


def test_from_logvar_std_logvar_and_indexing():
    p = Gaussian.from_logvar(T([[0.0, 1.0]]), T([[0.0, math.log(4.0)]]))
    torch.testing.assert_close(p.var, T([[1.0, 4.0]]))
    torch.testing.assert_close(p.std, T([[1.0, 2.0]]))
    torch.testing.assert_close(p.logvar, T([[0.0, math.log(4.0)]]))
    assert p[0].shape == (2,)


# properties -------------------------------------------------------------------------

dims = dict(seed=st.integers(0, 2**31 - 1), e=st.integers(1, 4), b=st.integers(1, 3), d=st.integers(1, 3))


def random_experts(seed, e, b, d):
    g = torch.Generator().manual_seed(seed)
    experts = random_gaussian((e, b, d), g)
    mask = torch.rand(e, b, generator=g) < 0.6
    mask[0] = True  # like a prior expert: every element keeps at least one expert
    return experts, mask, g


@settings(max_examples=50, deadline=None)
@given(**dims)
def test_masked_expert_changes_nothing(seed, e, b, d):
    experts, mask, g = random_experts(seed, e, b, d)
    nan = torch.full((1, b, d), float("nan"), dtype=torch.float64)
    extra = Gaussian(nan, torch.rand(1, b, d, generator=g, dtype=torch.float64))
    with_extra = combine(stack([*experts, extra[0]]), torch.cat([mask, torch.zeros(1, b, dtype=torch.bool)]))
    out = combine(experts, mask)
    assert torch.isfinite(with_extra.mean).all()
    assert_gaussian_close(with_extra, out)


@settings(max_examples=50, deadline=None)
@given(**dims)
def test_combine_is_permutation_invariant(seed, e, b, d):
    experts, mask, g = random_experts(seed, e, b, d)
    exponent = torch.ones(e, 1, dtype=torch.float64) + torch.rand(e, 1, generator=g, dtype=torch.float64)
    perm = torch.randperm(e, generator=g)
    out = combine(experts, mask, exponent)
    assert_gaussian_close(combine(experts[perm], mask[perm], exponent[perm]), out)


@settings(max_examples=50, deadline=None)
@given(s=st.integers(1, 5), **dims)
def test_combine_broadcasts_mask_over_subset_axis(s, seed, e, b, d):
    experts, _, g = random_experts(seed, e, b, d)
    masks = torch.rand(s, e, b, generator=g) < 0.5
    masks[:, 0] = True
    out = combine(experts, masks, dim=-3)
    assert out.shape == (s, b, d)
    for i in range(s):
        assert_gaussian_close(out[i], combine(experts, masks[i], dim=0))


@settings(max_examples=50, deadline=None)
@given(**dims)
def test_adding_natural_parameters_is_the_product(seed, e, b, d):
    experts, _, _ = random_experts(seed, e, b, d)
    precision, shift = experts.natural
    product = Gaussian.from_natural(precision.sum(0), shift.sum(0))
    assert_gaussian_close(product, combine(experts))
    assert_gaussian_close(Gaussian.from_natural(*experts.natural), experts)
