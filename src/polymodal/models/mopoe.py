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

from dataclasses import dataclass

import torch

from ..config import checked
from ..data import Batch
from ..gaussian import Gaussian, Mixture
from ..modalities import Schema
from .base import LatentConfig, LossOutput, PerModality


@dataclass
@checked(mixture=("stratified", "sampled"))
class MoPoEConfig(LatentConfig):
    mixture: str = "stratified"


class MoPoE(PerModality):
    name = "mopoe"
    Config = MoPoEConfig

    def __init__(self, schema: Schema, config: MoPoEConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        m = len(schema)
        subsets = torch.tensor([[bool(i >> j & 1) for j in range(m)] for i in range(1, 2**m)])
        self.register_buffer("subsets", subsets, persistent=False)  # [S, M]

    def proposal(self, batch: Batch) -> Mixture:
        """q(z | X): the uniform mixture ``[S, B, D]`` of the products of experts of every subset,
        each sample using the subsets in its power set (non-empty, only modalities it has)."""
        use = self.subsets[:, :, None] & batch.presence()  # [S, M, B]
        products = (self.prior((len(batch),)) * self.experts(batch).masked(use).prod(-3)).gaussian()
        return Mixture(products, use=(use == self.subsets[:, :, None]).all(1))

    def encode(self, batch: Batch) -> Gaussian:
        return self.proposal(batch).matched(self.prior(()))

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        q = self.proposal(batch)
        share = q.use / q.use.sum(0).clamp_min(1)  # [S, B]
        if self.config.mixture == "stratified":
            recon = (self.reconstruction(batch, self.decode(q.components.rsample())) * share).sum(0)  # a draw of each
        else:
            recon = self.reconstruction(batch, self.decode(q.rsample())) * q.use.any(0)  # a draw of one, chosen uniformly
        kl = (q.components.kl(self.prior(tuple(q.components.shape[:-1]))) * share).sum(0)
        n = len(batch)
        loss = -(recon - beta * kl).sum() / n
        return LossOutput(loss, {"recon": recon.sum().detach() / n, "kl": kl.sum().detach() / n})
