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
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


class NonPositivePrecisionError(ValueError):
    """A quotient of experts left a precision that is zero or negative."""


@dataclass
class Gaussian:
    """Diagonal Gaussian N(mean, diag(var)) over the last axis, like ``torch.distributions``."""

    mean: Tensor
    var: Tensor

    @classmethod
    def standard(cls, shape: tuple[int, ...], device=None, dtype=None) -> Gaussian:
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.ones(shape, device=device, dtype=dtype))

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    @property
    def logvar(self) -> Tensor:
        return self.var.log()

    @property
    def natural(self) -> Experts:
        """This Gaussian as an expert in natural parameters."""
        precision = 1.0 / self.var
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
        return Gaussian(self.shift / self.precision, 1.0 / self.precision)


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


def mixture_log_prob(components: Gaussian, z: Tensor) -> Tensor:
    """log (1/N) sum_i N(z; mean_i, var_i) of the uniform mixture of ``components`` ``[N, D]``,
    for latents ``z`` ``[..., D]``: ``[...]`` (a VampPrior-style mixture prior)."""
    return log_mean_exp(components.log_prob(z.unsqueeze(-2)), -1)
