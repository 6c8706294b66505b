"""Diagonal Gaussians and the algebra every model shares.

A :class:`Gaussian` holds a mean and a variance of the same shape; the last axis is the
event (latent) axis and everything before it is batch. Experts are combined by one masked
routine, :func:`combine`, which computes a product of experts with an exponent per expert:
exponent ``+1`` multiplies an expert in, ``-1`` divides it out (a quotient expert), any
other real number raises it to that power, and a masked expert contributes nothing. The
prior is never implicit: callers pass it as one of the experts.
"""

from __future__ import annotations

import math
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
    def from_logvar(cls, mean: Tensor, logvar: Tensor) -> Gaussian:
        return cls(mean, logvar.exp())

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
    def natural(self) -> tuple[Tensor, Tensor]:
        """Natural parameters (precision, precision * mean): a product of experts adds them."""
        precision = 1.0 / self.var
        return precision, precision * self.mean

    @classmethod
    def from_natural(cls, precision: Tensor, shift: Tensor) -> Gaussian:
        return cls(shift / precision, 1.0 / precision)

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

    def detach(self) -> Gaussian:
        return Gaussian(self.mean.detach(), self.var.detach())


def stack(experts: list[Gaussian], dim: int = 0) -> Gaussian:
    """Stack experts of equal shape along a new axis."""
    return Gaussian(torch.stack([e.mean for e in experts], dim), torch.stack([e.var for e in experts], dim))


def combine(
    experts: Gaussian,
    mask: Tensor | None = None,
    exponent: Tensor | float | None = None,
    dim: int = 0,
) -> Gaussian:
    """Masked product (and quotient) of Gaussian experts along axis ``dim``.

    With precisions T_e = exponent_e * mask_e / var_e, the result has
    precision sum_e T_e and mean sum_e T_e mean_e / sum_e T_e.

    ``experts`` has the expert axis at ``dim``. ``mask`` (bool or 0/1) and ``exponent`` are
    broadcast against the experts' batch shape (``experts.shape[:-1]``); they may add
    leading axes, e.g. one row per subset of modalities, in which case give ``dim`` as a
    negative index. Masked experts are ignored, even when their mean is not finite. A sign
    per expert for experts ``[E, B, D]`` is therefore an exponent of shape ``[E, 1]``.

    Raises :class:`NonPositivePrecisionError` when a combined precision is not positive: a
    quotient divided out too much, or a mask left no expert (include the prior expert).
    """
    precision = 1.0 / experts.var
    weighted_mean = experts.mean
    if mask is not None:
        keep = mask.bool().unsqueeze(-1)
        precision = torch.where(keep, precision, torch.zeros((), dtype=precision.dtype, device=precision.device))
        weighted_mean = torch.where(keep, weighted_mean, torch.zeros((), dtype=weighted_mean.dtype, device=weighted_mean.device))
    check = mask is not None
    if exponent is not None:
        exponent = torch.as_tensor(exponent, dtype=precision.dtype, device=precision.device)
        if exponent.dim() > 0:
            exponent = exponent.unsqueeze(-1)
        check = check or bool((exponent < 0).any())
        precision = precision * exponent
    total = precision.sum(dim)
    if check and not bool((total > 0).all()):
        raise NonPositivePrecisionError(
            f"combined precision is not positive (minimum {total.min().item():.3g}): a quotient divided out experts "
            "narrower than the product of the others, or a mask left no expert (include the prior expert)"
        )
    mean = (precision * weighted_mean).sum(dim) / total
    return Gaussian(mean, 1.0 / total)


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
