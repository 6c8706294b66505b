r"""JMVAE: joint multimodal VAE, trained with JMVAE-kl (Suzuki, Nakayama & Matsuo, 2016).

Generative model: p(z) = N(0, I),  p(x_1..x_M, z) = p(z) \prod_m p(x_m | z).

Inference: a joint encoder q(z | X) that reads every modality X = (x_1..x_M), and one
unimodal encoder q(z | x_m) per modality for when modalities are missing.

Objective (JMVAE-kl), for a complete sample, with likelihood weights lambda_m and KL
weight beta:

    L(X) = E_{q(z|X)}[ \sum_m lambda_m log p(x_m | z) ]
           - beta ( KL(q(z|X) || p(z)) + alpha \sum_m KL(q(z|X) || q(z|x_m)) ),

loss = -mean over the batch. The unimodal encoders learn from the KL terms that pull each
of them towards the joint posterior.

The posterior given a sample (``encode``: ``embed``, ``predict``, ``impute`` and the
importance proposal of ``log_likelihood``): with every modality the joint encoder; with a
subset S of them the product of the unimodal experts of S without a prior expert,
q_S(z) \propto \prod_{m in S} q(z | x_m) (one modality: its own encoder, as in the paper);
with none the prior.

Partially observed data: the joint encoder is defined on complete samples only, so a
sample that lacks a modality falls back to the posterior ``encode`` gives it and
contributes that posterior's ELBO,

    L(x_S) = E_{q_S}[ \sum_{m in S} lambda_m log p(x_m | z) ] - beta KL(q_S || p(z)),

with no alpha term (there is no joint posterior to pull towards). A sample with one
modality thus trains its modality's encoder and decoder as a VAE, and one with nothing
contributes nothing. Complete and incomplete samples share a batch, each on its own
branch; unobserved features inside a present modality are left out of log p(x_m | z) and
given to the encoders as zeros. MultiVae's JMVAE cannot train on incomplete data (it
raises on a batch with masks; its partially observed PolyMNIST benchmark trains it on the
complete samples alone, the paper does not consider the case).

Differences from the paper and MultiVae, and why:

* Incomplete samples are trained on, as above, rather than dropped.
* beta, the trainer's KL weight, multiplies both KL terms: MultiVae's warm-up factor
  a(t) = min(1, epoch / warmup) does the same, so ``kl_warmup=warmup`` reproduces it
  (MultiVae's extra beta on the prior KL alone, 1 in the paper, is not an option).
* Subsets of 2..M-1 modalities use the product of their unimodal experts without a prior
  expert, as MultiVae (the paper has two modalities).
* The joint encoder is each modality's default feature network (conv for images, an MLP
  otherwise; width ``hidden[-1]``), concatenated, then an MLP (``joint_hidden``) to the
  Gaussian head; MultiVae concatenates copies of the unimodal encoders' means and applies
  two 512-unit layers. Variances are softplus + 1e-4, as every encoder here.
* ``alpha = 0.1``, MultiVae's default and its reproduction's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import AT_LEAST_ONE, NON_NEGATIVE, checked
from ..data import Batch
from ..gaussian import Gaussian, where
from ..modalities import Schema
from ..nets import FeatureEncoder, gaussian_mlp
from .base import LatentConfig, LossOutput, ModalityDict, PerModality


@dataclass
@checked(joint_hidden=AT_LEAST_ONE, alpha=NON_NEGATIVE)
class JMVAEConfig(LatentConfig):
    joint_hidden: tuple[int, ...] = (256,)
    alpha: float = 0.1


class JMVAE(PerModality):
    name = "jmvae"
    Config = JMVAEConfig

    def __init__(self, schema: Schema, config: JMVAEConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        width = c.hidden[-1] if c.hidden else c.latent_dim
        self.joint_features = ModalityDict(
            {mod.name: FeatureEncoder(mod, width, c.hidden[:-1], c.channels) for mod in schema}
        )
        self.joint_head = gaussian_mlp(len(schema) * width, c.joint_hidden, c.latent_dim)

    def joint(self, batch: Batch) -> Gaussian:
        """q(z | X) of the joint encoder, ``[B, D]`` (meaningful for complete samples)."""
        names = self.schema.names
        return self.joint_head(torch.cat([self.joint_features[n](batch.values[n], batch.observed[n]) for n in names], -1))

    def encode(self, batch: Batch) -> Gaussian:
        present = batch.presence()
        return where(present.all(0), self.joint(batch), self.product(self.experts(batch), present))

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        experts, present = self.experts(batch), batch.presence()
        complete = present.all(0)
        joint = self.joint(batch)
        q = where(complete, joint, self.product(experts, present))  # the prior, for a sample with nothing
        recon = self.reconstruction(batch, self.decode(q.rsample()))
        kl = q.kl(self.prior((len(batch),)))  # 0 for a sample with nothing, as recon
        pull = torch.where(complete, joint.kl(experts).sum(0), 0.0)  # sum_m KL(q(z|X) || q(z|x_m))
        n = len(batch)
        loss = -(recon - beta * (kl + self.config.alpha * pull)).sum() / n
        terms = {"recon": recon.sum() / n, "kl": kl.sum() / n, "kl_unimodal": pull.sum() / n}
        return LossOutput(loss, {k: v.detach() for k, v in terms.items()})
