import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal

from polymodal import gaussian as pm_gaussian
from polymodal.gaussian import (
    ANY,
    NONNEGATIVE,
    POSITIVE,
    Gaussian,
    Mixture,
    NonPositivePrecisionError,
    debug,
    iw_bound,
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
    out = (Gaussian(T([1.0]), T([2.0])) * Gaussian(T([3.0]), T([0.5]))).gaussian()
    torch.testing.assert_close(out.var, T([0.4]))
    torch.testing.assert_close(out.mean, T([2.6]))


def test_product_of_diagonal_gaussians_is_per_dimension():
    experts = Gaussian(T([[1.0, -2.0], [3.0, 4.0], [0.0, 0.0]]), T([[2.0, 1.0], [0.5, 1.0], [1.0, 2.0]]))
    out = experts.natural.prod(0).gaussian()
    precision = T([0.5 + 2 + 1, 1 + 1 + 0.5])
    torch.testing.assert_close(out.var, 1 / precision)
    torch.testing.assert_close(out.mean, T([0.5 * 1 + 2 * 3, -2.0 + 4.0]) / precision)


def test_natural_parameters_closed_form():
    experts = Gaussian(T([2.0, -1.0]), T([0.5, 4.0])).natural
    torch.testing.assert_close(experts.precision, T([2.0, 0.25]))
    torch.testing.assert_close(experts.shift, T([4.0, -0.25]))


def test_quotient_matches_closed_form():
    # N(2, 0.5) / N(1, 2): precision 2 - 0.5 = 1.5, mean (2 * 2 - 0.5 * 1) / 1.5 = 7 / 3
    out = (Gaussian(T([2.0]), T([0.5])) / Gaussian(T([1.0]), T([2.0]))).gaussian()
    torch.testing.assert_close(out.var, T([1 / 1.5]))
    torch.testing.assert_close(out.mean, T([7 / 3]))


def test_power_scales_precision():
    out = (Gaussian(T([1.5, -1.0]), T([2.0, 0.5])) ** 3.0).gaussian()
    torch.testing.assert_close(out.var, T([2 / 3, 0.5 / 3]))
    torch.testing.assert_close(out.mean, T([1.5, -1.0]))


def test_power_by_a_tensor_is_per_sample():
    # two samples, exponents 2 and -1 of N(0, 1), times N(1, 0.5): precisions 2 + 2 = 4 and 2 - 1 = 1
    prior = Gaussian(torch.zeros(2, 1), torch.ones(2, 1))
    out = (Gaussian(torch.ones(2, 1), torch.full((2, 1), 0.5)) * prior ** T([2.0, -1.0])).gaussian()
    torch.testing.assert_close(out.var, T([[0.25], [1.0]]))
    torch.testing.assert_close(out.mean, T([[0.5], [2.0]]))


@pytest.mark.parametrize("divisor_var", [0.5, 1.0])
def test_quotient_leaving_non_positive_precision_raises(divisor_var):
    divided = Gaussian(T([0.0, 0.0]), T([1.0, 1.0])) / Gaussian(T([0.0, 0.0]), T([4.0, divisor_var]))
    with pytest.raises(NonPositivePrecisionError, match="precision is not positive"):
        divided.gaussian()
    assert issubclass(NonPositivePrecisionError, ValueError)


def test_mask_leaving_no_expert_raises():
    experts = Gaussian(T([[0.0], [1.0]]), T([[1.0], [2.0]]))
    with pytest.raises(NonPositivePrecisionError, match="left no expert"):
        experts.masked(T([False, False])).prod(0).gaussian()


def test_masked_quotient_is_not_checked_against_unmasked_ones():
    # the narrow divisor is masked out, so the quotient is just the first expert
    out = (Gaussian(T([0.0]), T([1.0])) / Gaussian(T([0.0]), T([0.5])).masked(T(False))).gaussian()
    assert_gaussian_close(out, Gaussian(T([0.0]), T([1.0])))


def test_only_products_that_may_be_improper_are_checked():
    proper = Gaussian(T([0.0]), T([1.0]))
    assert (proper * proper.masked(T(False))).known == POSITIVE
    assert proper.masked(T(True)).known == NONNEGATIVE
    assert (proper / proper).known == ANY and (proper * (proper / proper)).known == ANY
    assert (proper ** 2.0).known == POSITIVE and (proper ** T([2.0])).known == ANY


def test_debug_checks_and_restores_itself():
    # on the CPU every product that may be improper is checked anyway; debug() keeps that and restores itself
    with debug():
        with pytest.raises(NonPositivePrecisionError):
            (Gaussian(T([0.0]), T([1.0])) / Gaussian(T([0.0]), T([0.5]))).gaussian()
    assert not pm_gaussian._debug


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
    Gaussian(mean, logvar.exp()).rsample((5,)).sum().backward()
    assert mean.grad is not None and logvar.grad is not None
    torch.testing.assert_close(mean.grad, torch.full((3,), 5.0))


def test_std_logvar_and_indexing():
    p = Gaussian(T([[0.0, 1.0]]), T([[1.0, 4.0]]))
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
    with_extra = stack([*experts, extra[0]]).masked(torch.cat([mask, torch.zeros(1, b, dtype=torch.bool)])).prod(0).gaussian()
    out = experts.masked(mask).prod(0).gaussian()
    assert torch.isfinite(with_extra.mean).all()
    assert_gaussian_close(with_extra, out)


@settings(max_examples=50, deadline=None)
@given(**dims)
def test_product_is_order_invariant(seed, e, b, d):
    experts, mask, g = random_experts(seed, e, b, d)
    exponent = 1 + torch.rand(e, 1, generator=g, dtype=torch.float64)
    perm = torch.randperm(e, generator=g)
    out = (experts.masked(mask) ** exponent).prod(0).gaussian()
    assert_gaussian_close((experts[perm].masked(mask[perm]) ** exponent[perm]).prod(0).gaussian(), out)
    one_by_one = experts[perm[0]].masked(mask[perm[0]])
    for i in perm[1:]:
        one_by_one = experts[i].masked(mask[i]) * one_by_one
    assert_gaussian_close(one_by_one.gaussian(), experts.masked(mask).prod(0).gaussian())


@settings(max_examples=50, deadline=None)
@given(**dims)
def test_quotient_inverts_product(seed, e, b, d):
    experts, mask, g = random_experts(seed, e, b, d)
    other = random_gaussian((b, d), g)
    product = experts.masked(mask).prod(0)
    assert_gaussian_close((product * other / other).gaussian(), product.gaussian())
    assert_gaussian_close((other * experts[0] / experts[0]).gaussian(), other)


@settings(max_examples=50, deadline=None)
@given(s=st.integers(1, 5), **dims)
def test_mask_broadcasts_over_a_subset_axis(s, seed, e, b, d):
    experts, _, g = random_experts(seed, e, b, d)
    masks = torch.rand(s, e, b, generator=g) < 0.5
    masks[:, 0] = True
    out = experts.masked(masks).prod(-3).gaussian()
    assert out.shape == (s, b, d)
    for i in range(s):
        assert_gaussian_close(out[i], experts.masked(masks[i]).prod(0).gaussian())


@settings(max_examples=50, deadline=None)
@given(t=st.integers(1, 6), **dims)
def test_per_time_step_masks_equal_each_step_alone(t, seed, e, b, d):
    g = torch.Generator().manual_seed(seed)
    experts = random_gaussian((e, b, t, d), g)
    present = torch.rand(e, b, t, generator=g) < 0.5
    prior = random_gaussian((b, t, d), g)
    out = (prior * experts.masked(present).prod(0)).gaussian()
    for step in range(t):
        alone = (prior[:, step] * experts[:, :, step].masked(present[:, :, step]).prod(0)).gaussian()
        assert_gaussian_close(out[:, step], alone)
    nothing = (prior * experts.masked(torch.zeros_like(present)).prod(0)).gaussian()
    assert_gaussian_close(nothing, prior)


@settings(max_examples=50, deadline=None)
@given(**dims)
def test_natural_parameters_round_trip(seed, e, b, d):
    experts, _, _ = random_experts(seed, e, b, d)
    assert_gaussian_close(experts.natural.gaussian(), experts)
    precision = (1 / experts.var).sum(0)
    torch.testing.assert_close(experts.natural.prod(0).gaussian().var, 1 / precision)


def normal_pdf(x, mean, var):
    return math.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2 * math.pi * var)


def test_mixture_log_prob_uniform_weighted_and_masked_against_hand():
    components = Gaussian(T([[[0.0], [1.0]], [[2.0], [-1.0]]]), T([[[1.0], [0.5]], [[4.0], [2.0]]]))  # [C=2, B=2, 1]
    z = T([[0.5], [0.3]])
    uniform = [0.5 * (normal_pdf(0.5, 0.0, 1.0) + normal_pdf(0.5, 2.0, 4.0)),
               0.5 * (normal_pdf(0.3, 1.0, 0.5) + normal_pdf(0.3, -1.0, 2.0))]
    torch.testing.assert_close(Mixture(components).log_prob(z), T(uniform).log())
    weights = T([[0.2, 0.9], [0.6, 0.3]])  # not normalised: 1/4 and 3/4, 3/4 and 1/4
    weighted = [0.25 * normal_pdf(0.5, 0.0, 1.0) + 0.75 * normal_pdf(0.5, 2.0, 4.0),
                0.75 * normal_pdf(0.3, 1.0, 0.5) + 0.25 * normal_pdf(0.3, -1.0, 2.0)]
    torch.testing.assert_close(Mixture(components, weights).log_prob(z), T(weighted).log())
    use = T([[True, False], [False, False]])  # the first sample uses its first component; the second none: all
    masked = [normal_pdf(0.5, 0.0, 1.0), uniform[1]]
    torch.testing.assert_close(Mixture(components, use=use).log_prob(z), T(masked).log())
    torch.testing.assert_close(Mixture(components, weights, use).log_prob(z), T([masked[0], weighted[1]]).log())
    draws = T([[[0.5], [0.3]], [[1.0], [1.0]]])  # leading sample axes broadcast
    assert Mixture(components).log_prob(draws).shape == (2, 2)


def test_mixture_samples_and_moment_matching():
    torch.manual_seed(0)
    components = Gaussian(T([[0.0, 1.0], [4.0, -1.0]]), T([[1.0, 0.25], [0.5, 1.0]]))  # [C=2, D=2], no batch
    mixture = Mixture(components, T([0.25, 0.75]))
    z = mixture.sample((40000,))
    matched = mixture.matched()
    assert z.shape == (40000, 2)
    torch.testing.assert_close(matched.mean, T([3.0, -0.5]))
    torch.testing.assert_close(matched.var, T([0.25 * 1 + 0.75 * 0.5 + 0.25 * 9 + 0.75 * 1, 0.25 * 0.25 + 0.75 + 0.75]))
    torch.testing.assert_close(z.mean(0), matched.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(z.var(0), matched.var, atol=0.06, rtol=0)
    batch = mixture.expand(3)
    assert batch.shape == (3, 2) and batch.sample((5,)).shape == (5, 3, 2)
    torch.testing.assert_close(batch.log_prob(z[:3]), mixture.log_prob(z[:3]))


def test_mixture_draws_only_used_components_and_matches_otherwise():
    components = Gaussian(T([[[0.0]], [[100.0]]]), T([[[1e-4]], [[1e-4]]]))  # [C=2, B=1, 1]
    used = Mixture(components, use=T([[False], [True]]))
    assert (used.sample((50,)) > 50).all()
    prior = Gaussian.standard((1,))
    nothing = Mixture(components, use=T([[False], [False]])).matched(prior)
    torch.testing.assert_close(nothing.mean, T([[0.0]]))
    torch.testing.assert_close(nothing.var, T([[1.0]]))
    mean = T([[[0.0]], [[1.0]]], requires_grad=True)
    Mixture(Gaussian(mean, torch.ones(2, 1, 1))).rsample((4,)).sum().backward()
    assert mean.grad.sum() == 4  # reparameterised within the chosen component


def test_iw_bound_is_log_mean_exp_and_dreg_changes_only_the_gradient():
    mean = torch.zeros(3, 1, requires_grad=True)  # the proposal's parameter; its log-density is held fixed in log_w

    def bound(dreg):
        torch.manual_seed(0)
        z = mean + torch.randn(5, 3, 1)
        log_w = (-((z - 1.0) ** 2) + (z - mean.detach()) ** 2).sum(-1)  # log p - log q, up to constants
        value = iw_bound(log_w, z if dreg else None)
        return value, torch.autograd.grad(value.sum(), mean)[0], z.detach(), log_w.detach()

    plain, g_plain, z, log_w = bound(False)
    dreg, g_dreg, _, _ = bound(True)
    w = torch.softmax(log_w, 0)
    torch.testing.assert_close(plain, log_mean_exp(log_w, 0))
    torch.testing.assert_close(dreg, plain)
    d_log_w = -2 * (z - 1.0) + 2 * (z - mean.detach())  # d log w / d z, q's parameters fixed
    torch.testing.assert_close(g_plain, (w.unsqueeze(-1) * d_log_w).sum(0))
    torch.testing.assert_close(g_dreg, (w.unsqueeze(-1) ** 2 * d_log_w).sum(0))
