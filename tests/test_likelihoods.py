import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from polymodal.likelihoods import Bernoulli, Categorical, Gaussian, Laplace, make_likelihood

B, F_ = 4, 3
g = torch.Generator().manual_seed(0)
PARAMS = torch.randn(B, F_, 2, generator=g)
LOGITS = torch.randn(B, F_, 5, generator=g)
REAL = torch.randn(B, F_, generator=g)
BINARY = (torch.rand(B, F_, generator=g) < 0.5).float()
CLASSES = torch.randint(0, 5, (B, F_), generator=g)

# (family, params, x, torch distribution with the same parameters)
CASES = {
    "gaussian": (Gaussian(scale=0.3), PARAMS[..., :1], REAL, D.Normal(PARAMS[..., 0], 0.3)),
    "gaussian-learned": (
        Gaussian(learn_scale=True),
        PARAMS,
        REAL,
        D.Normal(PARAMS[..., 0], F.softplus(PARAMS[..., 1]) + 1e-3),
    ),
    "laplace": (Laplace(scale=0.7), PARAMS[..., :1], REAL, D.Laplace(PARAMS[..., 0], 0.7)),
    "bernoulli": (Bernoulli(), PARAMS[..., :1], BINARY, D.Bernoulli(logits=PARAMS[..., 0])),
    "categorical": (Categorical(5), LOGITS, CLASSES, D.Categorical(logits=LOGITS)),
}
cases = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


@cases
def test_log_prob_matches_torch_distributions(case):
    family, params, x, reference = case
    assert params.shape[-1] == family.n_params
    torch.testing.assert_close(family(params, 1).log_prob(x), reference.log_prob(x).sum(-1))
    torch.testing.assert_close(family(params, 0).log_prob(x), reference.log_prob(x))


@cases
def test_masked_entries_are_ignored(case):
    family, params, x, reference = case
    mask = torch.rand(B, F_, generator=torch.Generator().manual_seed(1)) < 0.5
    obs = family(params, 1)
    expected = (reference.log_prob(x) * mask).sum(-1)
    torch.testing.assert_close(obs.log_prob(x, mask), expected)
    changed = torch.where(mask, x, (x + 1) % 2 if isinstance(family, (Bernoulli, Categorical)) else x + 10.0)
    assert not torch.equal(changed, x)
    torch.testing.assert_close(obs.log_prob(changed, mask), expected)
    torch.testing.assert_close(obs.log_prob(x, torch.zeros_like(mask)), torch.zeros(B))


def test_masked_invalid_values_are_ignored_in_value_and_gradient():
    params = PARAMS[..., :1].clone().requires_grad_()
    x = REAL.clone()
    x[0, 0] = float("nan")
    out = Gaussian()(params, 1).log_prob(x, ~x.isnan())
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(params.grad).all()
    labels = CLASSES.clone()
    labels[1, 2] = -1
    mask = labels >= 0
    obs = Categorical(5)(LOGITS, 1)
    torch.testing.assert_close(obs.log_prob(labels, mask), obs.log_prob(CLASSES, mask))


@cases
def test_log_prob_broadcasts_over_leading_sample_axis(case):
    family, params, x, _ = case
    params_s = torch.stack([params, params * 0.5, params + 1])  # [S=3, B, F, P]
    mask = torch.rand(B, F_, generator=torch.Generator().manual_seed(2)) < 0.7
    out = family(params_s, 1).log_prob(x, mask)
    assert out.shape == (3, B)
    for s in range(3):
        torch.testing.assert_close(out[s], family(params_s[s], 1).log_prob(x, mask))


def test_event_axes_are_summed_for_images():
    params = torch.randn(2, 3, 4, 1, generator=torch.Generator().manual_seed(3))
    x = torch.rand(2, 3, 4)
    out = Bernoulli()(params, 2).log_prob(x)
    assert out.shape == (2,)
    torch.testing.assert_close(out, -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none").sum((1, 2)))


def test_mean_point_sample_shapes_and_values():
    torch.manual_seed(0)
    for family, params in [(Gaussian(), PARAMS[..., :1]), (Laplace(), PARAMS[..., :1]), (Gaussian(learn_scale=True), PARAMS)]:
        obs = family(params, 1)
        assert obs.mean.shape == obs.point.shape == obs.sample().shape == (B, F_)
        torch.testing.assert_close(obs.mean, params[..., 0])
    bern = Bernoulli()(PARAMS[..., :1], 1)
    torch.testing.assert_close(bern.mean, torch.sigmoid(PARAMS[..., 0]))
    assert bern.sample().shape == (B, F_) and set(bern.sample().unique().tolist()) <= {0.0, 1.0}
    cat = Categorical(5)(LOGITS, 1)
    assert cat.mean.shape == (B, F_, 5)
    torch.testing.assert_close(cat.mean.sum(-1), torch.ones(B, F_))
    torch.testing.assert_close(cat.point, LOGITS.argmax(-1))
    sample = cat.sample()
    assert sample.shape == (B, F_) and sample.min() >= 0 and sample.max() < 5


@pytest.mark.parametrize(
    "family, std",
    [
        (Gaussian(scale=0.5), 0.5),
        (Laplace(scale=0.5), 0.5 * 2**0.5),
        (Gaussian(learn_scale=True), float(F.softplus(torch.tensor(3.0))) + 1e-3),
    ],
)
def test_samples_have_the_right_moments(family, std):
    torch.manual_seed(0)
    sample = family(torch.full((20000, 1, family.n_params), 3.0), 1).sample()
    assert abs(sample.mean() - 3.0) < 0.05
    assert abs(sample.std() - std) < 0.05


def test_bernoulli_sample_frequency():
    torch.manual_seed(0)
    logit = torch.logit(torch.tensor(0.2))
    assert abs(Bernoulli()(torch.full((20000, 1, 1), float(logit)), 1).sample().mean() - 0.2) < 0.02


def test_make_likelihood():
    assert isinstance(make_likelihood("bernoulli"), Bernoulli)
    gauss = make_likelihood({"name": "gaussian", "scale": 0.5})
    assert isinstance(gauss, Gaussian) and gauss.scale == 0.5 and gauss.n_params == 1
    assert make_likelihood({"name": "gaussian", "learn_scale": True}).n_params == 2
    cat = Categorical(7)
    assert make_likelihood(cat) is cat
    for family in [gauss, cat, Laplace(0.2), Bernoulli()]:
        assert make_likelihood(family.config()) == family
    assert make_likelihood(cat.config()).n_params == 7
    assert Gaussian(0.5) != Gaussian(0.6)


def test_make_likelihood_errors():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'.*bernoulli"):
        make_likelihood("poisson")
    with pytest.raises(ValueError, match="unknown likelihood"):
        make_likelihood({"scale": 1.0})
    with pytest.raises(TypeError):
        make_likelihood({"name": "gaussian", "sclae": 1.0})
    for bad in [lambda: Gaussian(scale=0.0), lambda: Laplace(scale=-1.0), lambda: Categorical(1)]:
        with pytest.raises(ValueError):
            bad()
