r"""MoPoE: mixture of products of experts (Sutter, Daunhawer & Vogt, ICLR 2021).

Generative model: p(z) = N(0, I), p(x_1..x_M, z) = p(z) \prod_m p(x_m | z).

Inference: the uniform mixture, over the non-empty subsets S of the modalities X a sample
has, of the products of experts with the prior expert (as the reference),

    q(z | X) = 1/|P(X)| \sum_{S in P(X)} q_S(z),   q_S(z) \propto p(z) \prod_{m in S} q~(z | x_m).

Objective, with the KL of the mixture replaced by its upper bound (the mean of the
components' KLs) and likelihood weights lambda_m, KL weight beta:

    L(X) = 1/|P(X)| \sum_{S in P(X)} ( E_{q_S}[ \sum_{m in X} lambda_m log p(x_m | z) ] - beta KL(q_S || p(z)) ),

loss = -mean over the batch. P(X) is the power set of what each sample has, per sample, so
a sample with one modality contributes that modality's ELBO; unobserved features are left
out. The 2^M - 1 subsets are fixed once; each unimodal expert is computed once per batch
and every product formed from them.

Difference from the reference: by default (``mixture="stratified"``) the expectation over
the mixture is stratified (one draw from every component, each weighted 1 / |P(X)|)
instead of one component sampled per sample: the same objective in expectation, with less
variance, at 2^M - 1 decodes per sample. ``mixture="sampled"`` is the reference's
estimator: one component of each sample's power set drawn uniformly, one draw from it,
each modality decoded once per sample; the KL term is the same mean of the components'
KLs either way.

For the task API, ``encode`` gives the mixture moment-matched to one Gaussian (the prior
with nothing observed), and ``log_likelihood`` / ``impute(samples=K)`` draw from the
mixture itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import AT_LEAST_ONE, NON_NEGATIVE, checked
from ..data import Batch
from ..gaussian import Gaussian, stack
from ..likelihoods import Observation
from ..modalities import Schema
from ..nets import Decoder, Encoder
from .base import LossOutput, ModalityDict, Model
from .mmvae import chosen_components, matched_mixture, mixture_sampler


@dataclass
@checked(latent_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE, channels=AT_LEAST_ONE, weights=NON_NEGATIVE,
         mixture=("stratified", "sampled"))
class MoPoEConfig:
    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    channels: tuple[int, ...] = (32, 64)
    weights: dict[str, float] = field(default_factory=dict)
    mixture: str = "stratified"


class MoPoE(Model):
    name = "mopoe"
    Config = MoPoEConfig

    def __init__(self, schema: Schema, config: MoPoEConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c, m = self.config, len(schema)
        if any(mod.sequential for mod in schema):
            raise ValueError("MoPoE models static modalities; use MDMM for sequences")
        self.encoders = ModalityDict({mod.name: Encoder(mod, c.latent_dim, c.hidden, c.channels) for mod in schema})
        self.decoders = ModalityDict({mod.name: Decoder(mod, c.latent_dim, c.hidden, c.channels) for mod in schema})
        subsets = torch.tensor([[bool(i >> j & 1) for j in range(m)] for i in range(1, 2**m)])
        self.register_buffer("subsets", subsets, persistent=False)  # [S, M]

    def decode(self, z: Tensor) -> dict[str, Observation]:
        return self.observations({name: decoder(z) for name, decoder in self.decoders.items()})

    def components(self, batch: Batch) -> tuple[Gaussian, Tensor]:
        """``[S, B, D]`` the product of experts of every subset, and ``[S, B]`` whether the subset
        is in the sample's power set (non-empty, and only modalities it has)."""
        present = batch.presence()
        experts = stack([self.encoders[name](batch.values[name]) for name in self.schema.names])
        use = self.subsets[:, :, None] & present  # [S, M, B]
        products = (self.prior((len(batch),)) * experts.masked(use).prod(-3)).gaussian()
        return products, (use == self.subsets[:, :, None]).all(1)

    def encode(self, batch: Batch) -> Gaussian:
        products, valid = self.components(batch)
        return matched_mixture(products, valid, self.prior((len(batch),)))

    def loss(self, batch: Batch, beta: float = 1.0) -> LossOutput:
        q, valid = self.components(batch)
        share = valid / valid.sum(0).clamp_min(1)  # [S, B]
        if self.config.mixture == "stratified":
            recon = (self.reconstruction(batch, self.decode(q.rsample())) * share).sum(0)  # one draw from every component
        else:
            z = chosen_components(q, valid, 1)[0].rsample()  # one draw from one component, chosen uniformly
            recon = self.reconstruction(batch, self.decode(z)) * valid.any(0)
        kl = (q.kl(self.prior(tuple(q.shape[:-1]))) * share).sum(0)
        n = len(batch)
        loss = -(recon - beta * kl).sum() / n
        return LossOutput(loss, {"recon": recon.sum().detach() / n, "kl": kl.sum().detach() / n})

    def sampler(self, batch: Batch) -> Callable[[int], tuple[Tensor, Tensor]]:
        """Draws from the mixture q(z | X) itself, a subset of the power set uniformly per draw."""
        return mixture_sampler(*self.components(batch))
