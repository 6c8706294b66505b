"""The task API every model shares, written once.

A model implements ``loss``, ``encode`` (the posterior given whatever each sample has)
and ``decode`` (likelihoods of every modality given latents); ``embed``, ``impute``,
``predict``, ``generate`` and ``log_likelihood`` are built on those here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import ConfigError, make_config
from ..data import Batch
from ..files import write_folder
from ..gaussian import Gaussian, log_mean_exp
from ..likelihoods import Observation
from ..modalities import Schema

MODELS: dict[str, type[Model]] = {}


@dataclass
class LossOutput:
    """The scalar to minimise and its named terms (detached, for logging)."""

    loss: Tensor
    terms: dict[str, Tensor]


class Model(nn.Module):
    """Base of the models. Subclasses set ``name`` and ``Config`` and are registered."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            MODELS[cls.name] = cls

    def __init__(self, schema: Schema, config: Any = None, **kwargs: Any):
        super().__init__()
        if config is not None and kwargs:
            raise ConfigError(f"{type(self).__name__}: pass either a config or keyword options, not both")
        if config is None:
            config = make_config(self.Config, kwargs)
        elif isinstance(config, dict):
            config = make_config(self.Config, config)
        self.schema = schema
        self.config = config
        unknown = sorted(set(getattr(config, "weights", {})) - set(schema.names))
        if unknown:
            raise ConfigError(f"{type(self).__name__}: weights name unknown modalities {unknown}; the schema has {schema.names}")

    def save(self, folder: str | Path) -> Path:
        """Write config JSON and safetensors weights to ``folder``; ``polymodal.load`` reads it."""
        config = {"model": self.name, "schema": self.schema.config(), "config": dataclasses.asdict(self.config)}
        return write_folder(folder, config, self.state_dict())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def weight(self, name: str) -> float:
        """The likelihood weight (lambda) of a modality; 1 unless the config says otherwise."""
        return float(getattr(self.config, "weights", {}).get(name, 1.0))

    @property
    def latent_size(self) -> int:
        """Dimension of the whole latent vector."""
        return self.config.latent_dim

    def prior(self, shape: tuple[int, ...]) -> Gaussian:
        return Gaussian.standard((*shape, self.latent_size), device=self.device)

    def default_schedules(self) -> dict[str, Any]:
        """Loss-weight schedules the method calls for, as ``{weight: Schedule options}``; the
        trainer's config overrides them."""
        return {}

    def loss(self, batch: Batch, beta: float = 1.0) -> LossOutput:
        raise NotImplementedError

    def encode(self, batch: Batch) -> Gaussian:
        raise NotImplementedError

    def decode(self, z: Tensor) -> dict[str, Observation]:
        raise NotImplementedError

    def observations(self, params: dict[str, Tensor]) -> dict[str, Observation]:
        """Each modality's likelihood, given decoder outputs by modality name."""
        return {mod.name: mod.likelihood(params[mod.name], len(mod.shape)) for mod in self.schema}

    @torch.no_grad()
    def embed(self, batch: Batch) -> Tensor:
        """Posterior mean of the latent given what each sample has."""
        self.eval()
        return self.encode(batch.to(self.device)).mean

    @torch.no_grad()
    def reconstruct(self, batch: Batch) -> dict[str, Observation]:
        """Likelihoods of every modality decoded from the posterior mean."""
        return self.decode(self.embed(batch))

    @torch.no_grad()
    def impute(self, batch: Batch, samples: int = 0, chunk: int = 100) -> Batch:
        """A copy of ``batch`` whose unobserved entries are filled in; observed entries are
        returned unchanged and every mask becomes True.

        With ``samples = 0`` the fill is decoded from the posterior mean. With ``samples = K``
        it is the self-normalised importance-sampling estimate of E[x_u | x_o] under the
        model, sum_k w_k E[x_u | z_k] with w_k proportional to p(x_o | z_k) p(z_k) / q(z_k | x_o)
        (the most probable class under the weighted probabilities, for categorical).
        """
        self.eval()
        batch = batch.to(self.device)
        if samples:
            log_w, means = [], {name: [] for name in self.schema.names}
            for lw, decoded in self.importance_draws(batch, samples, chunk):
                log_w.append(lw)
                for name, obs in decoded.items():
                    means[name].append(obs.mean)
            w = torch.cat(log_w).softmax(0)  # [K, B]
            fill = {}
            for mod in self.schema:
                mean = torch.cat(means[mod.name])
                estimate = (w.view(*w.shape, *[1] * (mean.dim() - 2)) * mean).sum(0)
                fill[mod.name] = estimate.argmax(-1) if mod.categorical else estimate
        else:
            fill = {name: obs.point for name, obs in self.reconstruct(batch).items()}
        values = {name: torch.where(batch.observed[name], x, fill[name].to(x.dtype)) for name, x in batch.values.items()}
        return Batch(batch.schema, values, {k: torch.ones_like(m) for k, m in batch.observed.items()})

    @torch.no_grad()
    def predict(self, batch: Batch, target: str, inputs: list[str] | None = None, proba: bool = False) -> Tensor:
        """Predict modality ``target`` from the ``inputs`` modalities (default: all others).

        Returns the imputation value (class indices for categorical), or with ``proba`` the
        likelihood's mean (class probabilities for categorical).
        """
        inputs = [n for n in self.schema.names if n != target] if inputs is None else inputs
        if target in inputs:
            raise ValueError(f"predict: target {target!r} cannot also be an input")
        hidden = [n for n in self.schema.names if n not in inputs]
        observation = self.reconstruct(batch.without(*hidden))[target]
        return observation.mean if proba else observation.point

    @torch.no_grad()
    def generate(self, n: int, sample: bool = False) -> Batch:
        """``n`` joint samples from the prior: likelihood means (or samples) of every modality."""
        self.eval()
        decoded = self.decode(self.prior((n,)).sample())
        values = {name: obs.sample() if sample else obs.point for name, obs in decoded.items()}
        return Batch(self.schema, values, {k: torch.ones(v.shape, dtype=torch.bool, device=v.device) for k, v in values.items()})

    def importance_draws(self, batch: Batch, samples: int, chunk: int) -> Iterator[tuple[Tensor, dict[str, Observation]]]:
        """``samples`` posterior draws, ``chunk`` at a time: their importance log-weights
        ``[K, B]`` and decoded likelihoods."""
        q = self.encode(batch)
        for start in range(0, samples, chunk):
            yield self.log_weights(batch, q, q.sample((min(chunk, samples - start),)))

    def log_weights(self, batch: Batch, q: Gaussian, z: Tensor) -> tuple[Tensor, dict[str, Observation]]:
        """Importance log-weights log p(x_o, z) - log q(z | x_o) for latents ``z`` ``[K, B, D]``
        drawn from ``q``, and the decoded likelihoods."""
        decoded = self.decode(z)
        log_w = self.prior(tuple(q.shape[:-1])).log_prob(z) - q.log_prob(z)
        for name, obs in decoded.items():
            log_w = log_w + obs.log_prob(batch.values[name], batch.observed[name])
        return log_w, decoded

    @torch.no_grad()
    def log_likelihood(self, batch: Batch, n_samples: int = 1000, chunk: int = 100) -> Tensor:
        """Importance-sampled log p(observed entries) per sample, with the posterior as proposal.

        log p(x_o) ~= log mean_s p(x_o | z_s) p(z_s) / q(z_s | x_o),  z_s ~ q(z | x_o).
        Samples are drawn ``chunk`` at a time for the whole batch at once.
        """
        self.eval()
        batch = batch.to(self.device)
        q = self.encode(batch)
        starts = range(0, n_samples, chunk)
        log_w = [self.log_weights(batch, q, q.sample((min(chunk, n_samples - start),)))[0] for start in starts]
        return log_mean_exp(torch.cat(log_w), 0)
