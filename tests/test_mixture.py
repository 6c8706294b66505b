import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import MultivariateNormal

import polymodal as pm

MEAN = np.array([1.0, -2.0, 0.5, 3.0])
COVARIANCE = np.array([[2.0, 0.8, 0.3, 0.0], [0.8, 1.5, -0.4, 0.2], [0.3, -0.4, 1.0, 0.5], [0.0, 0.2, 0.5, 1.2]])


def known(weights=(1.0,), shift=0.0):
    """A mixture with given parameters: component k has mean MEAN + k * shift and COVARIANCE."""
    k = len(weights)
    state = {"weights": torch.tensor(weights, dtype=torch.float64),
             "means": torch.tensor(np.stack([MEAN + i * shift for i in range(k)])),
             "covariances": torch.tensor(np.stack([COVARIANCE] * k)), "scale": torch.ones(4, dtype=torch.float64)}
    return pm.GaussianMixture.from_state(state)


def draws(n, rate, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(MEAN, COVARIANCE, size=n)
    missing = rng.random(x.shape) < rate
    return x, np.where(missing, np.nan, x)


def conditional(x):
    """Closed form E[x_u | x_o] and Cov[x_u | x_o] of one row under N(MEAN, COVARIANCE)."""
    o = ~np.isnan(x)
    u = ~o
    gain = COVARIANCE[np.ix_(u, o)] @ np.linalg.inv(COVARIANCE[np.ix_(o, o)])
    mean = MEAN[u] + gain @ (x[o] - MEAN[o])
    return mean, COVARIANCE[np.ix_(u, u)] - gain @ COVARIANCE[np.ix_(o, u)]


def test_on_complete_rows_em_gives_the_sample_mean_and_covariance_plus_the_ridge():
    x, _ = draws(300, 0.0)
    for ridge in (0.0, 0.1):
        mixture = pm.GaussianMixture(ridge=ridge).fit(x)
        np.testing.assert_allclose(mixture.means_[0].numpy(), x.mean(0), atol=1e-12)
        expected = np.cov(x, rowvar=False, bias=True) + np.diag(ridge * x.var(0))
        np.testing.assert_allclose(mixture.covariances_[0].numpy(), expected, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=6))
def test_conditional_mean_and_density_match_the_closed_form_for_any_pattern(patterns):
    rng = np.random.default_rng(len(patterns))
    x = rng.multivariate_normal(MEAN, COVARIANCE, size=len(patterns))
    x[np.array(patterns)] = np.nan
    mixture = known()
    filled, log_p = mixture.transform(x), mixture.log_likelihood(x)
    for row, fill, value in zip(x, filled, log_p):
        o = ~np.isnan(row)
        np.testing.assert_array_equal(fill[o], row[o])
        if (~o).any():
            np.testing.assert_allclose(fill[~o], conditional(row)[0], atol=1e-10)
        marginal = 0.0 if not o.any() else float(MultivariateNormal(
            torch.tensor(MEAN[o]), torch.tensor(COVARIANCE[np.ix_(o, o)])).log_prob(torch.tensor(row[o])))
        assert value == pytest.approx(marginal, abs=1e-10)


def test_a_mixture_weighs_its_components_by_their_responsibility():
    mixture = known(weights=(0.3, 0.7), shift=4.0)
    row = np.array([[2.0, np.nan, np.nan, 4.5]])
    o = np.array([True, False, False, True])
    parts, means = [], []
    for k, weight in enumerate((0.3, 0.7)):
        mean = MEAN + 4.0 * k
        density = MultivariateNormal(torch.tensor(mean[o]), torch.tensor(COVARIANCE[np.ix_(o, o)]))
        parts.append(np.log(weight) + float(density.log_prob(torch.tensor(row[0, o]))))
        gain = COVARIANCE[np.ix_(~o, o)] @ np.linalg.inv(COVARIANCE[np.ix_(o, o)])
        means.append(mean[~o] + gain @ (row[0, o] - mean[o]))
    log_p = np.logaddexp(*parts)
    responsibility = np.exp(np.array(parts) - log_p)
    assert mixture.log_likelihood(row)[0] == pytest.approx(log_p, abs=1e-10)
    np.testing.assert_allclose(mixture.transform(row)[0, ~o], responsibility @ np.stack(means), atol=1e-10)


def test_em_never_lowers_the_likelihood_and_recovers_the_parameters_from_incomplete_rows():
    _, x = draws(4000, 0.4)
    mixture = pm.GaussianMixture(ridge=0.0, tol=1e-8, iters=200).fit(x)
    steps = np.diff(mixture.log_likelihoods_)
    assert (steps > -1e-9).all() and len(steps) > 5
    np.testing.assert_allclose(mixture.means_[0].numpy(), MEAN, atol=0.1)
    np.testing.assert_allclose(mixture.covariances_[0].numpy(), COVARIANCE, atol=0.15)


def test_draws_follow_the_conditional_normal_and_keep_observed_cells():
    x = np.array([[0.5, np.nan, 1.0, np.nan], [np.nan, np.nan, np.nan, np.nan], [1.0, -2.0, 0.0, 3.5]])
    samples = known().sample(x, draws=20000, seed=3)
    assert samples.shape == (20000, 3, 4)
    np.testing.assert_array_equal(samples[:, 2], np.broadcast_to(x[2], (20000, 4)))
    for i in (0, 1):
        u = np.isnan(x[i])
        mean, covariance = conditional(x[i])
        np.testing.assert_array_equal(samples[:, i, ~u], np.broadcast_to(x[i, ~u], (20000, (~u).sum())))
        np.testing.assert_allclose(samples[:, i, u].mean(0), mean, atol=0.05)
        np.testing.assert_allclose(np.cov(samples[:, i, u], rowvar=False), covariance, atol=0.08)
    np.testing.assert_array_equal(known().sample(x, 5, seed=1), known().sample(x, 5, seed=1))


def test_several_components_fit_clusters_and_the_state_round_trips():
    # three clusters in a bend: x2 given x1 is far from linear, which one Gaussian cannot follow
    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    x = np.concatenate([rng.normal(c, 1.0, (300, 2)) for c in centres])
    truth = x.copy()
    x[rng.random(len(x)) < 0.3, 1] = np.nan
    three = pm.GaussianMixture(components=3, ridge=0.01).fit(x)
    one = pm.GaussianMixture(components=1, ridge=0.01).fit(x)
    missing = np.isnan(x)
    error = {k: np.sqrt(np.mean((m.transform(x) - truth)[missing] ** 2)) for k, m in ((1, one), (3, three))}
    assert error[3] < 0.5 * error[1]
    np.testing.assert_allclose(sorted(three.weights_.numpy()), [1 / 3] * 3, atol=0.03)
    again = pm.GaussianMixture.from_state(three.state())
    np.testing.assert_array_equal(again.transform(x), three.transform(x))
    warm = pm.GaussianMixture(components=3, ridge=0.05).fit(x, start=three)
    assert len(warm.log_likelihoods_) <= len(pm.GaussianMixture(components=3, ridge=0.05).fit(x).log_likelihoods_)


def test_bad_input_raises_a_data_error_that_says_what_was_expected():
    x, holey = draws(20, 0.2)
    cases = [(np.zeros(5), "expected a 2-D array"), (np.array([["a", "b"]]), "expected numbers"),
             (np.where(np.arange(4) == 2, np.nan, holey), r"column\(s\) \[2\] have no observed cell")]
    for bad, message in cases:
        with pytest.raises(pm.DataError, match=message):
            pm.GaussianMixture().fit(bad)
    with pytest.raises(pm.DataError, match="3 components need at least as many rows, got 2"):
        pm.GaussianMixture(components=3).fit(x[:2])
    fitted = pm.GaussianMixture().fit(holey)
    with pytest.raises(pm.DataError, match="fitted on 4 columns, got 3"):
        fitted.transform(x[:, :3])
