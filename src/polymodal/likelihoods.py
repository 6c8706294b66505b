"""Observation models p(x | z) with masked log-likelihoods.

A likelihood *family* (``Gaussian(scale=0.1)``, ``Bernoulli()``, ...) says how many numbers
a decoder must output per feature (``n_params``); calling it on the decoder's output gives
an :class:`Observation`, a distribution over one modality with ``log_prob(x, mask)``,
``mean``, ``sample()`` and ``point`` (the value imputation uses), in the manner of
``torch.distributions``.

Decoder outputs have shape ``(*batch, *features, n_params)``: the parameter axis is last
and always present. ``log_prob`` sums over the feature axes and ignores entries whose mask
is False, returning a tensor of the batch shape.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .gaussian import widen

LOG_2PI = math.log(2 * math.pi)


def _masked_sum(elementwise: Tensor, mask: Tensor | None, event_ndim: int) -> Tensor:
    if mask is not None:
        elementwise = torch.where(mask, elementwise, torch.zeros((), dtype=elementwise.dtype, device=elementwise.device))
    if event_ndim == 0:
        return elementwise
    return elementwise.sum(tuple(range(-event_ndim, 0)))


class Observation:
    """A distribution over one modality's values, parameterised by a decoder output."""

    def __init__(self, family: Likelihood, params: Tensor, event_ndim: int):
        self.family = family
        self.params = widen(params)
        self.event_ndim = event_ndim

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Sum of log p(x_j | z) over observed features j; shape ``batch``.

        ``x`` and ``mask`` broadcast against the parameters' batch shape (e.g. several latent
        samples per data point)."""
        x = x.expand(self.params.shape[:-1])
        if mask is not None:  # a masked entry may hold anything (NaN, -1): keep it out of values and gradients
            x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
        return _masked_sum(self.family.elementwise_log_prob(self.params, x), mask, self.event_ndim)

    @property
    def mean(self) -> Tensor:
        """Expected value (class probabilities, on a trailing axis, for categorical)."""
        return self.family.mean(self.params)

    @property
    def point(self) -> Tensor:
        """The value to impute: the mean, or the most probable class for categorical."""
        return self.family.point(self.params)

    def sample(self) -> Tensor:
        with torch.no_grad():
            return self.family.sample(self.params)


class Likelihood:
    """Base of the likelihood families. Subclasses are registered by ``name``."""

    name: ClassVar[str]
    n_params: ClassVar[int] = 1
    registry: ClassVar[dict[str, type[Likelihood]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Likelihood.registry[cls.name] = cls

    def __call__(self, params: Tensor, event_ndim: int) -> Observation:
        return Observation(self, params, event_ndim)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Likelihood) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def point(self, params: Tensor) -> Tensor:
        return self.mean(params)

    def elementwise_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Tensor) -> Tensor:
        raise NotImplementedError


class Gaussian(Likelihood):
    """Normal with a fixed ``scale``, or a scale the decoder outputs (``learn_scale=True``).

    A learned scale is ``softplus(raw) + min_scale``, so it never collapses to zero.
    """

    name = "gaussian"

    def __init__(self, scale: float = 1.0, learn_scale: bool = False, min_scale: float = 1e-3):
        if scale <= 0 or min_scale <= 0:
            raise ValueError(f"gaussian likelihood: scale and min_scale must be positive, got {scale}, {min_scale}")
        self.scale = float(scale)
        self.learn_scale = bool(learn_scale)
        self.min_scale = float(min_scale)

    @property
    def n_params(self) -> int:  # type: ignore[override]
        return 2 if self.learn_scale else 1

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale, "learn_scale": self.learn_scale, "min_scale": self.min_scale}

    def _scale(self, params: Tensor) -> Tensor | float:
        return F.softplus(params[..., 1]) + self.min_scale if self.learn_scale else self.scale

    def elementwise_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        scale = self._scale(params)
        log_scale = scale.log() if isinstance(scale, Tensor) else math.log(scale)
        return -0.5 * ((x - params[..., 0]) / scale) ** 2 - log_scale - 0.5 * LOG_2PI

    def mean(self, params: Tensor) -> Tensor:
        return params[..., 0]

    def sample(self, params: Tensor) -> Tensor:
        return params[..., 0] + self._scale(params) * torch.randn_like(params[..., 0])


class Laplace(Likelihood):
    """Laplace with a fixed ``scale``."""

    name = "laplace"

    def __init__(self, scale: float = 1.0):
        if scale <= 0:
            raise ValueError(f"laplace likelihood: scale must be positive, got {scale}")
        self.scale = float(scale)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale}

    def elementwise_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return -(x - params[..., 0]).abs() / self.scale - math.log(2 * self.scale)

    def mean(self, params: Tensor) -> Tensor:
        return params[..., 0]

    def sample(self, params: Tensor) -> Tensor:
        return torch.distributions.Laplace(params[..., 0], self.scale).sample()


class Bernoulli(Likelihood):
    """Bernoulli on logits. Values in [0, 1] are allowed (cross-entropy on grey levels)."""

    name = "bernoulli"

    def elementwise_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none")

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params[..., 0])

    def sample(self, params: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params[..., 0]))


class Categorical(Likelihood):
    """Categorical on logits; values are class indices, the parameter axis holds the classes."""

    name = "categorical"

    def __init__(self, num_classes: int):
        if num_classes < 2:
            raise ValueError(f"categorical likelihood needs at least 2 classes, got {num_classes}")
        self.num_classes = int(num_classes)

    @property
    def n_params(self) -> int:  # type: ignore[override]
        return self.num_classes

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes}

    def elementwise_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return params.log_softmax(-1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def mean(self, params: Tensor) -> Tensor:
        return params.softmax(-1)

    def point(self, params: Tensor) -> Tensor:
        return params.argmax(-1)

    def sample(self, params: Tensor) -> Tensor:
        return torch.distributions.Categorical(logits=params).sample()


def make_likelihood(spec: str | dict[str, Any] | Likelihood) -> Likelihood:
    """A likelihood from its name, its config dict, or itself."""
    if isinstance(spec, Likelihood):
        return spec
    config = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = config.pop("name", None)
    if name not in Likelihood.registry:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {sorted(Likelihood.registry)}")
    return Likelihood.registry[name](**config)
