r"""MMVAE+: mixture-of-experts multimodal VAE with shared and modality-private latents
(Palumbo, Daunhawer & Vogt, ICLR 2023).

Generative model: a latent z shared by the modalities and a private latent w_m of each,

    p(z) = N(0, I),  p(w_m) = N(0, I),  p(X, z, w) = p(z) \prod_m p(w_m) p(x_m | z, w_m).

Inference: modality m's encoder gives q(z | x_m) and q(w_m | x_m); the shared posterior is
the uniform mixture of the unimodal ones, q(z | X) = 1/M \sum_m q(z | x_m).

Auxiliary priors: r_m(w_m) = N(0, diag s_m^2), with learnable standard deviations
s_m = W softmax(theta_m) + 1e-6 (W = ``private_dim``; theta_m = 0 at the start, so r_m = p(w_m)).
When z comes from another modality's encoder, x_m is reconstructed with w_m ~ r_m, a draw
that knows nothing of x_m: so z must carry what the modalities share, and w_m cannot.

Objective (the "looser" importance-weighted bound, the mean over modalities outside the
log), K draws per modality, beta the KL weight inside each importance weight:

    L(X) = 1/M \sum_m log 1/K \sum_k omega_m^k,   with (z^k, w_m^k) ~ q(z | x_m) q(w_m | x_m),
                                                   w~_n^k ~ r_n for n != m,
    log omega_m^k = lambda_m log p(x_m | z^k, w_m^k) + \sum_{n != m} lambda_n log p(x_n | z^k, w~_n^k)
                    + beta [ log p(z^k) + log p(w_m^k) - log q(z^k | X) - log q(w_m^k | x_m) ],

loss = -mean over the batch of L. K = 1 is the beta-ELBO. ``gradient="dreg"`` (the
default, as the reference and MultiVae) trains with the doubly reparameterised gradient
(:func:`~polymodal.gaussian.iw_bound` at the draws (z, w_m)): the decoders and the
auxiliary priors get sum_k w~_k grad log omega_k (w~_k the normalised weights of a
modality's K draws), the encoders only the path through (z, w_m) with the weights squared,
their parameters held fixed inside log q; ``gradient="iwae"`` is the plain
gradient of the bound. The reported loss is the bound either way.

Partially observed data: with S the modalities a sample has, a missing modality's
component is dropped from the mixture (q(z | x_S) = 1/|S| \sum_{m in S} q(z | x_m)), its
bound from the mean over m (1/|S| \sum_{m in S}) and its reconstruction from every weight;
so a sample with one modality contributes that modality's bound, one with nothing
contributes nothing. Unobserved features are left out of log p(x_n | ...).

The task API's latent is (z, w_1..w_M), ``latent_dim + M private_dim`` wide. ``encode``
gives the mixture of the present components moment-matched to one Gaussian for z (the
prior with nothing observed) and q(w_m | x_m) for a present modality; for a missing one,
the prior p(w_m), which is its exact posterior under the model (w_m reaches nothing but
x_m). So a cross-modal prediction decodes x_n from z given the others and w_n drawn from
p(w_n) (its mean, for a point prediction), as the reference's test-time generation.
``generate`` draws z and every w_m from their priors; the importance proposal of
``log_likelihood`` and ``impute(samples=K)`` is the mixture itself for z, with ``encode``'s
private posteriors (a mixture whose components share their w part).

Differences from the reference code and MultiVae, and why:

* Gaussian priors, posteriors and auxiliary priors (the reference's PolyMNIST setting is
  Laplace): the same family as every other model here. The encoders' variances are
  softplus + 1e-4, not the reference's softmax scales that sum to the latent size; the
  auxiliary priors keep that parameterisation, so r_m can move its spread between
  dimensions but not shrink to a point.
* Per-sample masks as MultiVae's (the reference has none), with a missing modality's
  private prior p(w_m) as its posterior in ``encode``. Given several modalities, ``encode``
  moment-matches their mixture per sample; MultiVae picks one of them per call.
* One encoder network per modality with one Gaussian head over (z, w_m) (the reference has
  two separate branches); the latent is ordered (z, w_1..w_M).
* The reference's DReG is the plain IWAE gradient by mistake (its hook never fires, its
  log q is not detached); MultiVae's is correct, and so is this one.
* ``samples = 10`` and DReG are MultiVae's defaults; the reference's PolyMNIST runs use
  K = 1 (the ELBO) and beta = 2.5 (``schedules={"beta": {"start": 2.5, "end": 2.5}}``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, checked
from ..data import Batch
from ..gaussian import Gaussian, Mixture, iw_bound, where
from ..likelihoods import Observation
from ..modalities import Schema
from .base import LatentConfig, LossOutput, PerModality


@dataclass
@checked(private_dim=AT_LEAST_ONE, samples=AT_LEAST_ONE, gradient=("iwae", "dreg"))
class MMVAEPlusConfig(LatentConfig):
    private_dim: int = 16
    samples: int = 10
    gradient: str = "dreg"


class MMVAEPlus(PerModality):
    name = "mmvaeplus"
    Config = MMVAEPlusConfig

    def __init__(self, schema: Schema, config: MMVAEPlusConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        self.auxiliary = nn.Parameter(torch.zeros(len(schema), self.config.private_dim))  # theta_m of r_m

    @property
    def code_dim(self) -> int:
        """A modality's code (z, w_m)."""
        return self.config.latent_dim + self.config.private_dim

    @property
    def latent_size(self) -> int:
        return self.config.latent_dim + len(self.schema) * self.config.private_dim

    def auxiliary_std(self) -> Tensor:
        """``[M, W]``: the standard deviations s_m of the auxiliary priors r_m."""
        return self.config.private_dim * torch.softmax(self.auxiliary, -1) + 1e-6

    def parts(self, batch: Batch) -> tuple[Gaussian, Gaussian]:
        """q(z | x_m) ``[M, B, D]`` and q(w_m | x_m) ``[M, B, W]`` of every modality."""
        both, d = self.experts(batch), self.config.latent_dim
        return both[..., :d], both[..., d:]

    def private(self, private: Gaussian, present: Tensor) -> Gaussian:
        """``[B, M * W]``: q(w_m | x_m) of the present modalities, p(w_m) of the missing ones."""
        own = where(present, private, Gaussian.standard(tuple(private.shape), device=private.mean.device))
        return Gaussian(own.mean.transpose(0, 1).flatten(1), own.var.transpose(0, 1).flatten(1))

    def proposal(self, batch: Batch) -> Mixture:
        """q(z | x_S) q(w | x_S): the uniform mixture ``[M, B, D + M W]`` of the present
        modalities' q(z | x_m), every component with the private latents' posteriors of
        ``encode`` (q(w_m | x_m) or p(w_m))."""
        (shared, private), present = self.parts(batch), batch.presence()
        own = self.private(private, present)
        w = own.expand(len(self.schema), *own.shape)
        return Mixture(Gaussian(torch.cat([shared.mean, w.mean], -1), torch.cat([shared.var, w.var], -1)), use=present)

    def encode(self, batch: Batch) -> Gaussian:
        return self.proposal(batch).matched(self.prior(()))

    def likelihood(self, name: str, z: Tensor, w: Tensor) -> Observation:
        """p(x_m | z, w_m) of modality ``name`` at shared latents ``z`` and its private ``w``."""
        return super().observation(name, torch.cat([z, w], -1))

    def observation(self, name: str, latent: Tensor) -> Observation:
        """p(x_m | z, w_m) at latents (z, w_1..w_M) ``[..., D + M W]``."""
        d, k, i = self.config.latent_dim, self.config.private_dim, self.schema.names.index(name)
        return self.likelihood(name, latent[..., :d], latent[..., d + i * k:d + (i + 1) * k])

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        (shared, private), present = self.parts(batch), batch.presence()
        k, m, d = self.config.samples, len(self.schema), self.config.latent_dim
        # [K, M, B, D + W]: K draws of (z, w_m) from each modality's encoder, one tensor for DReG's path through both
        drawn = torch.cat([shared.rsample((k,)), private.rsample((k,))], -1)
        z, w = drawn[..., :d], drawn[..., d:]
        dreg = self.config.gradient == "dreg" and drawn.requires_grad
        q_shared, q_private = (shared.detach(), private.detach()) if dreg else (shared, private)
        # w_n given to decoder n in the term of encoder m: its own draw if n = m, else a draw of r_n: [K, M, M, B, W]
        aux = torch.randn(k, m, *w.shape[1:], device=w.device) * self.auxiliary_std()[:, None, :]
        own = torch.eye(m, dtype=torch.bool, device=w.device)[:, :, None, None]
        w_in = torch.where(own, w.unsqueeze(2), aux)
        decoded = {n: self.likelihood(n, z, w_in[:, :, i]) for i, n in enumerate(self.schema.names)}
        recon = self.reconstruction(batch, decoded)  # [K, M, B]
        standard = Gaussian.standard((), device=z.device)
        log_q = Mixture(q_shared, use=present).log_prob(z) + q_private.log_prob(w)  # q(z | x_S) q(w_m | x_m)
        log_w = recon + beta * (standard.log_prob(z) + standard.log_prob(w) - log_q)
        bound = iw_bound(log_w, drawn if dreg else None)  # [M, B]
        per_sample = torch.where(present, bound, 0.0).sum(0) / present.sum(0).clamp_min(1)
        return LossOutput(-per_sample.mean(), {"bound": per_sample.mean().detach()})
