"""Diagonal Gaussians and the algebra every model shares.

A :class:`Gaussian` holds a mean and a variance of the same shape; the last axis is the
event (latent) axis and everything before it is batch. Products and quotients of experts
are written as algebra on :class:`Experts`, Gaussians kept in natural parameters
(precision, precision x mean) where a product adds and a quotient subtracts:

    q = (prior * experts.masked(present).prod(0)).gaussian()     # MVAE's posterior
    q = (experts.prod(0) / prior ** (n - 1)).gaussian()          # MVAE-Q's quotient

A masked expert has zero precision and contributes nothing, whatever its mean; the prior is
never implicit. :meth:`Experts.gaussian` normalises a product and raises
:class:`NonPositivePrecisionError` when a quotient or a mask left a precision that is not
positive. Products that include a proper Gaussian and no quotient are positive by
construction and are never checked; the others are checked where that costs no device
synchronisation (tensors on the CPU), or everywhere inside :func:`debug`. On an accelerator
outside :func:`debug`, an improper quotient gives NaN, which the trainer reports.

A :class:`Mixture` of such Gaussians (uniform or weighted, with components masked per batch
element) is the other distribution a model's prior or proposal can be; :func:`iw_bound` is
the importance-weighted bound of log-weights, with DReG's gradient as an option.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
POINT_VAR = 1e-8  # the variance of a Gaussian that stands for a point (a deterministic code)
HALF = (torch.bfloat16, torch.float16)


def widen(t: Tensor) -> Tensor:
    """``t`` in float32 if it holds 16-bit floats (a net's output under ``precision="bf16"``
    autocast), else as it is: the nets may run in bfloat16, but every distribution, product of
    experts and log-likelihood is computed in at least float32 (CPU autocast keeps exp, log,
    softplus and sums in bfloat16, whose 8-bit mantissa would blur a product of experts)."""
    return t.float() if t.dtype in HALF else t


class NonPositivePrecisionError(ValueError):
    """A quotient of experts left a precision that is zero or negative."""


@dataclass
class Gaussian:
    """Diagonal Gaussian N(mean, diag(var)) over the last axis, like ``torch.distributions``."""

    mean: Tensor
    var: Tensor

    def __post_init__(self) -> None:
        self.mean, self.var = widen(self.mean), widen(self.var)

    @classmethod
    def standard(cls, shape: tuple[int, ...], device=None, dtype=None) -> Gaussian:
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.ones(shape, device=device, dtype=dtype))

    @classmethod
    def point(cls, mean: Tensor) -> Gaussian:
        """A point mass at ``mean``, as a Gaussian of variance :data:`POINT_VAR`: the posterior of a
        deterministic encoder, so that the task API and the metrics that read means work."""
        return cls(mean, torch.full_like(mean, POINT_VAR))

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    @property
    def logvar(self) -> Tensor:
        return self.var.log()

    @property
    def natural(self) -> Experts:
        """This Gaussian as an expert in natural parameters."""
        precision = self.var.reciprocal()  # not 1.0 / var: Python's reflected division adds a multiplication by 1
        return Experts(precision, precision * self.mean, POSITIVE)

    def masked(self, mask: Tensor) -> Experts:
        """The experts where ``mask`` is True; elsewhere none (zero precision)."""
        return self.natural.masked(mask)

    def prod(self, dim: int = 0) -> Experts:
        """The product of these experts along axis ``dim``."""
        return self.natural.prod(dim)

    def __mul__(self, other: Gaussian | Experts) -> Experts:
        return self.natural * other

    def __truediv__(self, other: Gaussian | Experts) -> Experts:
        return self.natural / other

    def __pow__(self, exponent: Tensor | float) -> Experts:
        return self.natural ** exponent

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """Reparameterised sample of shape ``sample_shape + self.shape``."""
        eps = torch.randn(tuple(sample_shape) + tuple(self.mean.shape), device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + eps * self.std

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log density summed over the event axis."""
        return -0.5 * (LOG_2PI + self.var.log() + (z - self.mean) ** 2 / self.var).sum(-1)

    def kl(self, other: Gaussian) -> Tensor:
        """KL(self || other), summed over the event axis."""
        return kl_divergence(self, other)

    def __getitem__(self, index) -> Gaussian:
        return Gaussian(self.mean[index], self.var[index])

    def to(self, device) -> Gaussian:
        return Gaussian(self.mean.to(device), self.var.to(device))

    def expand(self, *shape: int) -> Gaussian:
        return Gaussian(self.mean.expand(*shape), self.var.expand(*shape))

    def detach(self) -> Gaussian:
        return Gaussian(self.mean.detach(), self.var.detach())


POSITIVE, NONNEGATIVE, ANY = 2, 1, 0  # what is known of an expert's precision, from strongest to weakest
_debug = False


@contextmanager
def debug(enabled: bool = True) -> Iterator[None]:
    """Check every normalised product of experts for a non-positive precision, on every
    device (a device synchronisation per check)."""
    global _debug
    previous, _debug = _debug, enabled
    try:
        yield
    finally:
        _debug = previous


def _as_natural(other: Gaussian | Experts) -> Experts:
    return other.natural if isinstance(other, Gaussian) else other


class Experts:
    """A product of diagonal Gaussian experts kept in natural parameters: ``precision``
    (1 / var) and ``shift`` (precision * mean), event axis last. ``*`` multiplies, ``/``
    divides, ``**`` raises to a power (a scalar, or a tensor of the batch shape),
    :meth:`masked` drops experts, :meth:`prod` multiplies along an axis and :meth:`gaussian`
    normalises. ``known`` records what the algebra guarantees about the precision
    (``POSITIVE``, ``NONNEGATIVE`` or ``ANY``), so that only a product that may be improper
    is checked."""

    def __init__(self, precision: Tensor, shift: Tensor, known: int = ANY):
        self.precision, self.shift, self.known = precision, shift, known

    @property
    def shape(self) -> torch.Size:
        return self.precision.shape

    def __mul__(self, other: Gaussian | Experts) -> Experts:
        other = _as_natural(other)
        known = ANY if ANY in (self.known, other.known) else max(self.known, other.known)
        return Experts(self.precision + other.precision, self.shift + other.shift, known)

    def __truediv__(self, other: Gaussian | Experts) -> Experts:
        other = _as_natural(other)
        return Experts(self.precision - other.precision, self.shift - other.shift, ANY)

    def __pow__(self, exponent: Tensor | float) -> Experts:
        if isinstance(exponent, Tensor):
            known, exponent = ANY, exponent.to(self.precision.dtype).unsqueeze(-1)
        else:
            known = self.known if exponent > 0 else NONNEGATIVE if exponent == 0 and self.known != ANY else ANY
        return Experts(self.precision * exponent, self.shift * exponent, known)

    def masked(self, mask: Tensor) -> Experts:
        """The experts where ``mask`` is True (broadcast against the batch shape; it may add
        leading axes), none elsewhere: zero precision, whatever the mean held."""
        keep = mask.bool().unsqueeze(-1)
        zero = torch.zeros((), dtype=self.precision.dtype, device=self.precision.device)
        return Experts(torch.where(keep, self.precision, zero), torch.where(keep, self.shift, zero), min(self.known, NONNEGATIVE))

    def unbind(self, dim: int) -> tuple[Experts, ...]:
        """The experts split along axis ``dim``."""
        return tuple(Experts(p, s, self.known) for p, s in zip(self.precision.unbind(dim), self.shift.unbind(dim)))

    def expand(self, *shape: int) -> Experts:
        return Experts(self.precision.expand(*shape), self.shift.expand(*shape), self.known)

    def prod(self, dim: int = 0) -> Experts:
        """The product of the experts along axis ``dim`` (a batch axis of the tensors)."""
        return Experts(self.precision.sum(dim), self.shift.sum(dim), self.known)

    def gaussian(self) -> Gaussian:
        """The normalised product. Raises :class:`NonPositivePrecisionError` when a precision
        is not positive (checked as the module docstring says)."""
        if self.known != POSITIVE and (_debug or self.precision.device.type == "cpu"):
            if not bool((self.precision > 0).all()):
                raise NonPositivePrecisionError(
                    f"combined precision is not positive (minimum {self.precision.min().item():.3g}): a quotient divided "
                    "out experts narrower than the product of the others, or a mask left no expert (include the prior expert)"
                )
        return Gaussian(self.shift / self.precision, self.precision.reciprocal())


def stack(experts: list[Gaussian], dim: int = 0) -> Gaussian:
    """Stack experts of equal shape along a new axis."""
    return Gaussian(torch.stack([e.mean for e in experts], dim), torch.stack([e.var for e in experts], dim))


def where(condition: Tensor, a: Gaussian, b: Gaussian) -> Gaussian:
    """``a`` where ``condition`` (of the batch shape, broadcast) is True, else ``b``."""
    keep = condition.unsqueeze(-1)
    return Gaussian(torch.where(keep, a.mean, b.mean), torch.where(keep, a.var, b.var))


def kl_divergence(p: Gaussian, q: Gaussian) -> Tensor:
    """Analytic KL(p || q) between diagonal Gaussians, summed over the event axis."""
    return 0.5 * (q.var.log() - p.var.log() + (p.var + (p.mean - q.mean) ** 2) / q.var - 1.0).sum(-1)


def moment_match(mixture: Gaussian, weights: Tensor | None = None, dim: int = 0) -> Gaussian:
    """The Gaussian with the mean and (diagonal) variance of a mixture along ``dim``.

    ``weights`` are the mixture weights along ``dim`` (uniform when omitted) and must sum to 1.
    """
    if weights is None:
        mean = mixture.mean.mean(dim)
        var = (mixture.var + (mixture.mean - mean.unsqueeze(dim)) ** 2).mean(dim)
        return Gaussian(mean, var)
    w = weights.unsqueeze(-1)
    mean = (w * mixture.mean).sum(dim)
    var = (w * (mixture.var + (mixture.mean - mean.unsqueeze(dim)) ** 2)).sum(dim)
    return Gaussian(mean, var)


def w2(p: Gaussian, q: Gaussian) -> Tensor:
    """Squared 2-Wasserstein distance between diagonal Gaussians, summed over the event axis."""
    return ((p.mean - q.mean) ** 2 + (p.std - q.std) ** 2).sum(-1)


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def iw_bound(log_w: Tensor, z: Tensor | None = None) -> Tensor:
    """The importance-weighted bound log 1/K sum_k w_k of log-weights ``log_w`` ``[K, ...]``.

    Given ``z`` ``[K, ..., D]``, the reparameterised draws that ``log_w`` was computed at with the
    proposal's parameters held fixed (detached) inside log q, the value is the same and the
    gradient the doubly reparameterised one (DReG; Tucker et al., 2019): with the normalised
    weights w~_k, the generative model gets the IWAE gradient sum_k w~_k grad log w_k, and the
    proposal only the path through z with the weights squared, sum_k w~_k^2 (d log w_k / d z_k)
    (d z_k / d phi). Its variance vanishes where the proposal is the exact posterior, which the
    IWAE gradient's does not (its score term grows with K). The gradient reaching the proposal
    through ``z`` is reweighted, so ``z`` should feed this bound only."""
    bound = log_mean_exp(log_w, 0)
    if z is None or not z.requires_grad:
        return bound
    w = torch.softmax(log_w, 0).detach()
    z.register_hook(lambda grad: w.unsqueeze(-1) * grad)  # the path through z: weights squared with the next line's
    surrogate = (w * log_w).sum(0)
    return bound.detach() + surrogate - surrogate.detach()


@dataclass
class Mixture:
    """A mixture of diagonal Gaussians, like ``torch.distributions.MixtureSameFamily``: the
    ``components`` ``[C, *batch, D]`` along the leading axis, ``weights`` ``[C, *batch]`` (uniform
    when omitted; need not be normalised) and ``use`` ``[C, *batch]``, the components each batch
    element mixes (all when omitted). A batch element that uses none is the mixture of all, so
    that it stays finite; :meth:`matched` can put another Gaussian there.

    Draws pick a component by its weight, then sample it: ``rsample`` is reparameterised within
    the chosen component (the choice itself has no gradient)."""

    components: Gaussian
    weights: Tensor | None = None
    use: Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        """The batch and event shape, without the component axis."""
        return self.components.shape[1:]

    @property
    def mask(self) -> Tensor:
        """``[C, *batch]``: the components in use, all of them where a batch element uses none."""
        if self.use is None:
            return torch.ones(self.components.shape[:-1], dtype=torch.bool, device=self.components.mean.device)
        return self.use | ~self.use.any(0)

    @property
    def probs(self) -> Tensor:
        """``[C, *batch]``: the normalised weights of the used components."""
        w = self.mask.to(self.components.mean.dtype)
        if self.weights is not None:
            w = w * self.weights
        return w / w.sum(0)

    def log_prob(self, z: Tensor) -> Tensor:
        """log sum_c pi_c N(z; mean_c, var_c) for latents ``z`` ``[..., *batch, D]``: ``[..., *batch]``."""
        axis = 1 - self.components.mean.dim()  # the component axis of the components' log-densities
        log_q = self.components.log_prob(z.unsqueeze(axis - 1))  # [..., C, *batch]
        if self.weights is None:
            mask = self.mask
            return torch.logsumexp(log_q.masked_fill(~mask, -math.inf), axis) - mask.sum(0).log()
        return torch.logsumexp(log_q + self.probs.log(), axis)

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """Draws ``sample_shape + self.shape``: for each, a component by its weight, then a
        reparameterised sample of it."""
        c, d = self.components.shape[0], self.components.shape[-1]
        k = math.prod(sample_shape)
        w = self.mask.float() if self.weights is None else self.mask * self.weights
        pick = torch.multinomial(w.reshape(c, -1).T.clamp_min(1e-12), k, replacement=True).T  # [k, n]
        index = pick.unsqueeze(-1).expand(k, -1, d)
        mean, var = self.components.mean.reshape(c, -1, d), self.components.var.reshape(c, -1, d)
        chosen = Gaussian(mean.gather(0, index), var.gather(0, index))
        return chosen.rsample().reshape(*sample_shape, *self.shape)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def matched(self, otherwise: Gaussian | None = None) -> Gaussian:
        """The Gaussian of the mixture's mean and (diagonal) variance per batch element;
        ``otherwise`` (broadcast to the batch) where an element uses no component."""
        matched = moment_match(self.components, self.probs)
        if otherwise is None or self.use is None:
            return matched
        return where(self.use.any(0), matched, otherwise.expand(*matched.shape))

    def expand(self, *shape: int) -> Mixture:
        """The same mixture for every element of a batch of ``shape``: ``[C, *shape, D]``."""
        c, d = self.components.shape[0], self.components.shape[-1]
        lead = (c, *[1] * len(shape))

        def grow(x: Tensor | None, *event: int) -> Tensor | None:
            return None if x is None else x.reshape(*lead, *event).expand(c, *shape, *event)

        return Mixture(Gaussian(grow(self.components.mean, d), grow(self.components.var, d)), grow(self.weights),
                       grow(self.use))
