r"""MVTCAE: multi-view total correlation autoencoder (Hwang, Kim, Kim, Kim & Kim, NeurIPS 2021).

Generative model: p(z) = N(0, I),  p(x_1..x_M, z) = p(z) \prod_m p(x_m | z).

Inference: the product of the unimodal experts without a prior expert,
q(z | X) \propto \prod_m q(z | x_m), for X = (x_1..x_M) and for any subset of it.

Objective: a bound on the total correlation among the modalities that z captures, as a
weighted sum of a variational information bottleneck (weight 1 - alpha) and M conditional
ones (weight alpha / M each). Per sample, with likelihood weights lambda_m, one draw z ~ q(z | X), and
beta the trainer's KL weight, the loss is

    ((M - alpha) / M) \sum_m lambda_m [-log p(x_m | z)]
        + beta [ (1 - alpha) KL(q(z|X) || p(z)) + (alpha / M) \sum_m KL(q(z|X) || q(z|x_m)) ],

averaged over the batch. The reconstruction weight (M - alpha) / M is (1 - alpha) from the
bottleneck plus alpha (M - 1) / M from the conditional terms, each of which reconstructs
the M - 1 other modalities.

Partially observed data: a sample with modalities S is scored by the same objective on
what it has, M replaced by |S|: q(z | x_S) \propto \prod_{m in S} q(z | x_m), the
reconstruction of x_S weighted (|S| - alpha) / |S|, the conditional KLs of S weighted
alpha / |S|. That is the bound above for the |S|-modal data the sample is, so a sample
with one modality contributes (1 - alpha) times its VAE loss (no conditional term: no
other modality to reconstruct); a sample with nothing contributes nothing. Unobserved
features inside a present modality are left out of log p(x_m | z).

Differences from the reference code and MultiVae, and why:

* Per-sample masks by dropping a missing expert from the product (zero precision) and its
  terms from the sums. The reference trains on complete data only. MultiVae sets a missing
  expert's log-variance to +inf (NaN gradients, removed only by an in-place overwrite) and
  keeps the global M in the weights, which gives a one-modality sample the reconstruction
  weight (M - alpha) / M against the prior KL's (1 - alpha): another bottleneck than the
  complete samples'. On complete samples the two agree.
* beta is the loss's KL weight (the trainer's, default 1, with ``kl_warmup``); the paper's
  PolyMNIST value 2.5 is a constant schedule, ``schedules={"beta": {"start": 2.5, "end": 2.5}}``.
* ``alpha = 5/6``, the reference's PolyMNIST value (MultiVae's default is 0.1).
* Gaussian encoders with variance softplus + 1e-4 (``exp(logvar)`` plus 1e-8 in the
  reference): the floor keeps a product of experts without a prior from collapsing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import FRACTION, checked
from ..data import Batch
from ..gaussian import Gaussian
from .base import LatentConfig, LossOutput, PerModality


@dataclass
@checked(alpha=FRACTION)
class MVTCAEConfig(LatentConfig):
    alpha: float = 5 / 6


class MVTCAE(PerModality):
    name = "mvtcae"
    Config = MVTCAEConfig

    def encode(self, batch: Batch) -> Gaussian:
        """q(z | x_S): the product of the present experts, no prior expert; the prior for a
        sample with none."""
        return self.product(self.experts(batch), batch.presence())

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        experts, present = self.experts(batch), batch.presence()
        q = self.product(experts, present)
        m = present.sum(0).clamp_min(1)  # |S| per sample; a sample with nothing has every term 0
        alpha = self.config.alpha
        recon = self.reconstruction(batch, self.decode(q.rsample()))
        kl = q.kl(self.prior((len(batch),)))
        conditional = (q.kl(experts) * present).sum(0)  # sum_{m in S} KL(q(z|x_S) || q(z|x_m))
        n = len(batch)
        loss = -((m - alpha) / m * recon - beta * ((1 - alpha) * kl + alpha / m * conditional)).sum() / n
        terms = {"recon": recon.sum() / n, "kl": kl.sum() / n, "kl_conditional": conditional.sum() / n}
        return LossOutput(loss, {k: v.detach() for k, v in terms.items()})
