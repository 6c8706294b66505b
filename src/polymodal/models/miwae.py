r"""MIWAE (Mattei & Frellsen, ICML 2019): importance-weighted autoencoder for missing data.

The encoder reads the zero-filled data; the bound uses only observed entries:

    L_K = E_{z_1..K ~ q(z | x_o)} log (1/K) \sum_k p(x_o | z_k) p(z_k) / q(z_k | x_o),

and imputation is the self-normalised importance-sampling estimate of E[x_u | x_o]:

    \hat x_u = \sum_k w_k E[x_u | z_k],   w_k \propto p(x_o | z_k) p(z_k) / q(z_k | x_o).

Differences from the paper: the observation model is each modality's own likelihood (a
Gaussian for numeric columns) rather than a Student t, so every method in the benchmark
scores data the same way. ``mask_input=True`` (off by default, as the paper) also gives the
encoder which modalities each sample has, so that a missing entry is told apart from an
observed zero (a column's minimum, on min-max scaled tables).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..config import AT_LEAST_ONE, NON_NEGATIVE, checked
from ..data import Batch
from ..gaussian import Gaussian, log_mean_exp
from ..likelihoods import Observation
from ..modalities import Schema
from ..nets import JointDecoder, gaussian_mlp, input_width, joint_input
from .base import LossOutput, Model


@dataclass
@checked(latent_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE, samples=AT_LEAST_ONE, impute_samples=NON_NEGATIVE)
class MIWAEConfig:
    latent_dim: int = 20
    hidden: tuple[int, ...] = (128, 128)
    samples: int = 20
    impute_samples: int = 1000
    mask_input: bool = False


class MIWAE(Model):
    name = "miwae"
    Config = MIWAEConfig
    loss_weights = frozenset()

    def __init__(self, schema: Schema, config: MIWAEConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        width = sum(input_width(mod) for mod in schema) + (len(schema) if c.mask_input else 0)
        self.encoder = gaussian_mlp(width, c.hidden, c.latent_dim)
        self.decoder = JointDecoder(schema, c.latent_dim, c.hidden)

    def encode(self, batch: Batch) -> Gaussian:
        return self.encoder(joint_input(batch, "zeros", with_mask=self.config.mask_input))

    def decode(self, z: Tensor) -> dict[str, Observation]:
        return self.observations(self.decoder(z))

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        q = self.encode(batch)
        z = q.rsample((self.config.samples,))
        bound = log_mean_exp(self.log_weights(batch, z, q.log_prob(z))[0], 0)
        return LossOutput(-bound.mean(), {"bound": bound.mean().detach()})

    def impute(self, batch: Batch, samples: int | None = None, chunk: int = 100) -> Batch:
        """Importance-sampled imputation with ``impute_samples`` samples unless told otherwise."""
        return super().impute(batch, self.config.impute_samples if samples is None else samples, chunk)
