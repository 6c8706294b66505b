r"""Imputation baselines of the VSAE paper, in the same framework: AE, VAE and CVAE-mask.

All three encode every modality at once from the zero-filled data, and decode every
modality from one latent with one network (the same backbone as VSAE's joint parts):

* AE (``variational=False``): z = mu(x_zero); loss = -\sum_{observed} lambda_i log p(x_i | z).
* VAE: q(z | x_zero); loss = -E_q \sum_{observed} lambda_i log p(x_i | z) + beta KL(q || N(0, I)).
* CVAE-mask (``condition_on_mask=True``): encoder and decoder also see the modality mask m.

Only observed entries are scored; unobserved ones are imputed from the decoder at the
posterior mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import AT_LEAST_ONE, WEIGHTS, Weights, checked
from ..data import Batch
from ..gaussian import Gaussian
from ..likelihoods import Observation
from ..modalities import Schema
from ..nets import JointDecoder, gaussian_mlp, input_width, joint_input
from .base import LossOutput, Model, query


@dataclass
@checked(latent_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE, weights=WEIGHTS)
class ZeroFillVAEConfig:
    latent_dim: int = 20
    hidden: tuple[int, ...] = (128, 128)
    weights: Weights = field(default_factory=dict)
    variational: bool = True
    condition_on_mask: bool = False


class ZeroFillVAE(Model):
    name = "zerofill-vae"
    Config = ZeroFillVAEConfig

    def __init__(self, schema: Schema, config: ZeroFillVAEConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        m = len(schema) if c.condition_on_mask else 0
        self.encoder = gaussian_mlp(sum(input_width(mod) for mod in schema) + m, c.hidden, c.latent_dim)
        self.decoder = JointDecoder(schema, c.latent_dim + m, c.hidden)

    def encode(self, batch: Batch) -> Gaussian:
        q = self.encoder(joint_input(batch, "zeros", self.config.condition_on_mask))
        return q if self.config.variational else Gaussian.point(q.mean)

    def decode(self, z: Tensor, mask: Tensor | None = None) -> dict[str, Observation]:
        """Likelihoods given z and, for CVAE-mask, the modality mask ``[B, M]`` to condition on
        (all observed when omitted)."""
        h = z
        if self.config.condition_on_mask:
            mask = torch.ones(*z.shape[:-1], len(self.schema), device=z.device) if mask is None else mask
            h = torch.cat([z, mask.float().expand(*z.shape[:-1], -1)], -1)
        return self.observations(self.decoder(h))

    @query
    def reconstruct(self, batch: Batch) -> dict[str, Observation]:
        batch = batch.to(self.device)
        return self.decode(self.embed(batch), batch.presence().T)

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        q = self.encode(batch)
        z = q.rsample() if self.config.variational else q.mean
        decoded = self.decode(z, batch.presence().T)
        recon = self.reconstruction(batch, decoded)
        kl = q.kl(self.prior((len(batch),))) if self.config.variational else torch.zeros_like(recon)
        loss = -(recon - beta * kl).mean()
        return LossOutput(loss, {"recon": recon.mean().detach(), "kl": kl.mean().detach()})
