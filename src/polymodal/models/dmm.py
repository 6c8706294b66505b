"""The deep Markov model that MDMM (BFVI) and its RNN baselines (DKS) share."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, FRACTION, POSITIVE, WEIGHTS, ConfigError, Weights, checked
from ..data import Batch
from ..gaussian import Gaussian
from ..likelihoods import Observation
from ..missing import drop_burst
from ..modalities import Schema
from ..nets import Decoder, GatedTransition
from .base import QUERIES, ModalityDict, Model, query


@dataclass
@checked(latent_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE, transition_hidden=AT_LEAST_ONE, transition_min_std=POSITIVE,
         weights=WEIGHTS, burst=FRACTION)
class DMMConfig:
    latent_dim: int = 5
    hidden: tuple[int, ...] = (20,)
    transition_hidden: int = 20
    transition_min_std: float = 1e-3
    weights: Weights = field(default_factory=dict)
    burst: float = 0.1
    inputs: list[str] | None = None
    rescale: bool = True
    transition_identity: bool = True


class DeepMarkovModel(Model):
    """The generative model that BFVI and its RNN baselines share: a learnable global prior
    p(z), the forward transition p(z_t | z_{t-1}) = p(z) * q~_fwd(z_t | z_{t-1}) through a gated
    transition network, and one decoder per modality. Subclasses add the inference network,
    which reads the ``inputs`` modalities (default: all); the others, e.g. a label to be
    predicted, are targets only. With ``transition_identity`` (default) the gated transitions'
    linear paths start as the identity (Krishnan et al.'s initialisation; the BFVI reference
    starts them at random, ``transition_identity=False``)."""

    Config = DMMConfig
    data = "sequences"
    queries = QUERIES | {"extrapolate"}

    def __init__(self, schema: Schema, config=None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        if c.transition_min_std <= 0:
            raise ConfigError(f"{type(self).__name__}: transition_min_std must be positive, got {c.transition_min_std}")
        unknown = sorted(set(c.inputs or []) - set(schema.names))
        if unknown or c.inputs == []:
            raise ConfigError(f"{type(self).__name__}: inputs must name modalities of the schema {schema.names}, got {c.inputs}")
        self.input_names = [n for n in schema.names if c.inputs is None or n in c.inputs]
        d = c.latent_dim
        self.decoders = ModalityDict({m.name: Decoder(m, d, c.hidden) for m in schema})
        self.transitions = nn.ModuleDict({"fwd": GatedTransition(d, c.transition_hidden, c.transition_min_std,
                                                                     c.transition_identity)})
        self.prior_mean = nn.Parameter(torch.zeros(d))
        self.prior_log_std = nn.Parameter(torch.zeros(d))

    def prior(self, shape: tuple[int, ...]) -> Gaussian:
        """The learnable global prior p(z), broadcast to ``shape``."""
        d = self.config.latent_dim
        std = self.prior_log_std.exp() + 1e-3
        return Gaussian(self.prior_mean.expand(*shape, d), (std**2).expand(*shape, d))

    def transition(self, z: Tensor, direction: str = "forward") -> Gaussian:
        """p(z_t | z_{t-1}) (``"forward"``) or p(z_t | z_{t+1}) (``"backward"``): the global prior
        times the transition network's quotient expert."""
        return (self.prior(()) * self.transitions[{"forward": "fwd", "backward": "bwd"}[direction]](z)).gaussian()

    @staticmethod
    def valid_steps(batch: Batch, names: list[str] | None = None) -> Tensor:
        """``[B, T]``: the steps of each sequence up to its last step where any of ``names``
        (default: every modality) has an observed entry. Padding is unobserved steps: a
        shorter sequence in a batch is one whose last steps hold nothing, and the models treat
        such steps as after the sequence's end (they follow the conditional prior and count
        for nothing in the loss)."""
        seen = torch.stack([batch.present(n) for n in names or batch.schema.names]).any(0)
        return seen.flip(1).cummax(1).values.flip(1)

    def training_inputs(self, batch: Batch) -> Batch:
        """What the inference network sees in training: one burst of ``burst`` of each
        sequence's valid steps deleted per modality and sequence (the targets stay complete)."""
        if not self.training or self.config.burst == 0:
            return batch
        return drop_burst(batch, self.config.burst, lengths=self.valid_steps(batch).sum(1))

    def decode(self, z: Tensor) -> dict[str, Observation]:
        return self.observations({name: decoder(z) for name, decoder in self.decoders.items()})

    def rescaled(self, batch: Batch) -> dict[str, float]:
        """The lambda_m, each divided by the fraction of m's entries observed within the valid
        steps of ``batch`` with ``rescale`` (so the reconstruction keeps its weight against the
        KL terms, which cover every valid step; padding changes nothing)."""
        if not self.config.rescale:
            return self.lambdas
        valid = self.valid_steps(batch)
        weights = {}
        for name, lam in self.lambdas.items():
            observed = batch.observed[name]
            entries = valid.sum() * observed[0, 0].numel()
            weights[name] = lam * entries / observed.sum().clamp(min=1)
        return weights

    @classmethod
    def sequence_steps(cls, batch: Batch) -> Tensor:
        """The number of valid (sequence, step) pairs (:meth:`valid_steps`), over which the loss
        is averaged: B * T for sequences without padding."""
        return cls.valid_steps(batch).sum().clamp(min=1)

    @query
    def extrapolate(self, batch: Batch, forward: int = 0, backward: int = 0) -> Batch:
        """The batch with ``backward`` steps added before the first and ``forward`` after the
        last, every unobserved entry filled in (interpolated inside, extrapolated outside)."""
        self.check_arguments("extrapolate", batch, forward=forward, backward=backward)

        def pad(x: Tensor) -> Tensor:
            shape = (x.shape[0], 1, *x.shape[2:])
            return torch.cat([x.new_zeros(shape).expand(-1, backward, *x.shape[2:]), x,
                              x.new_zeros(shape).expand(-1, forward, *x.shape[2:])], 1)

        padded = Batch(batch.schema, {k: pad(v) for k, v in batch.values.items()}, {k: pad(m) for k, m in batch.observed.items()})
        return self.impute(padded)

    @query
    def generate(self, n: int, steps: int = 100, sample: bool = False) -> Batch:
        """``n`` sequences of ``steps`` from the generative model."""
        self.check_arguments("generate", n=n, steps=steps)
        z = [self.prior((n,)).sample()]
        for _ in range(steps - 1):
            z.append(self.transition(z[-1]).sample())
        return self.drawn(self.decode(torch.stack(z, 1)), sample)

    def log_prior(self, path: Tensor) -> Tensor:
        """log p(z_1) + sum_t log p(z_t | z_{t-1}) of latent paths ``[..., T, D]``: ``[...]``, so
        that importance weights are per sequence, under the Markov prior."""
        first = self.prior(path.shape[:-2]).log_prob(path[..., 0, :])
        return first + self.transition(path[..., :-1, :]).log_prob(path[..., 1:, :]).sum(-1)
