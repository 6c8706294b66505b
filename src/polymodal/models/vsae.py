r"""VSAE: Variational Selective Autoencoder (Gong et al., ICLR 2020 submission).

Data x = (x_1..x_M) with modality mask m (m_i = 1: observed). The latent is factorised per
modality, z = (z_1..z_M), p(z) = \prod_i N(z_i; 0, I).

Selective proposal: each block comes from the modality's own encoder when it is observed,
and from one shared multimodal encoder, which sees the observed data (unobserved entries
filled with noise) and the mask, when it is not:

    q(z_i | x, m) = q_phi(z_i | x_i)      if m_i = 1
                    q_psi(z_i | x_o, m)   if m_i = 0.

Generative model: one data decoder p_theta(x | F(z)) and a mask decoder p_eps(m | F(z))
(factorised Bernoulli), both reading the aggregate F(z) = concat(z_1..z_M).

Objective per sample (weights lambda_i on the data terms, beta on the KL):

    L = \sum_{i in O} lambda_i E_q log p(x_i | z)
        + w_u \sum_{j in U} lambda_j E_q log p(\hat x_j | z)
        + E_q log p(m | z) - beta \sum_i KL(q(z_i | x, m) || N(0, I)),

where the unobserved term uses pseudo-targets \hat x_u decoded, without gradient, from the
same batch's selective posterior (the paper's two-pass procedure), and its weight w_u is 0
during the first ``warmup`` epochs and 1 after (a step schedule the trainer applies).

Partially observed data: a modality is observed when any of its entries is (the mask
model and the proposal switch on modality presence); within an observed modality the
missing entries are scored against the pseudo-targets like unobserved modalities. With
each table column its own modality (see ``polymodal.tables``) masking is per feature, as in
the paper's UCI experiments.

Our decisions on the paper's ambiguities (METHODS.md section 3.7):

1. Decoder input: ``decoder_mask="reconstructed"`` (default) appends the mask decoder's
   probabilities p(m | z), detached, to the data decoder's input, as the paper's text
   says helps; ``"none"`` decodes from F(z) alone, as the appendix's layer sizes suggest.
   Using the reconstructed mask keeps generation self-contained (no true mask needed).
2. Encoders output a mean and a variance per latent dimension (2 x latent outputs).
3. Pseudo-targets are decoder means (class argmax for categorical) of a posterior sample;
   the second pass uses the same inputs, as in Appendix B.2.
4. The multimodal encoder sees N(0, 1) noise in unobserved continuous entries
   (``fill="noise"``, the UCI setting) or zeros (``fill="zeros"``, the image setting);
   categorical entries are one-hot, all zeros when unobserved.
5. Batch size is the trainer's choice. 6. MAR/MNAR semantics: see ``polymodal.missing``.
7. Metrics count the removed entries only (``polymodal.metrics``).

Deliberate differences from the paper: the mask decoder and data decoder are SiLU MLPs
without batch norm (batch statistics would mix samples with different masks), and the
data likelihood is the modality's own (Gaussian with a fixed scale equals the paper's MSE
up to a weight).

Options beyond the paper, off by default: ``hide > 0`` adds, at every training step, a
second bound in which each observed modality is hidden from the proposal with that
probability (never from the likelihood), so the multimodal encoder also learns from real
targets, as MVAE's sub-sampled subsets do;
``samples = K > 1`` replaces the ELBO by the K-sample importance-weighted bound (with
sampled KL). ``impute(batch, samples=K)`` gives the importance-sampled imputation, with
the mask term p(m | z) in the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, WEIGHTS, Weights, checked
from ..data import Batch
from ..gaussian import Gaussian, log_mean_exp
from ..likelihoods import Bernoulli, Observation
from ..missing import drop_modalities
from ..modalities import Schema
from ..nets import MLP, Encoder, JointDecoder, gaussian_mlp, input_width, joint_input
from .base import LossOutput, ModalityDict, Model, query


@dataclass
@checked(latent_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE, joint_hidden=AT_LEAST_ONE, weights=WEIGHTS,
         decoder_mask=("reconstructed", "none"), fill=("noise", "zeros"), warmup=NON_NEGATIVE, hide=FRACTION,
         samples=AT_LEAST_ONE)
class VSAEConfig:
    latent_dim: int = 20
    hidden: tuple[int, ...] = (64, 64)
    joint_hidden: tuple[int, ...] = (128, 128)
    weights: Weights = field(default_factory=dict)
    decoder_mask: str = "reconstructed"
    fill: str = "noise"
    warmup: float = 20.0
    hide: float = 0.0
    samples: int = 1


class VSAE(Model):
    name = "vsae"
    Config = VSAEConfig
    loss_weights = frozenset({"beta", "unobserved"})

    def __init__(self, schema: Schema, config: VSAEConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        if c.decoder_mask not in ("reconstructed", "none") or c.fill not in ("noise", "zeros"):
            raise ValueError(f"VSAE: decoder_mask must be 'reconstructed' or 'none' and fill 'noise' or 'zeros', got {c}")
        m, d = len(schema), c.latent_dim
        self.encoders = ModalityDict({mod.name: Encoder(mod, d, c.hidden) for mod in schema})
        self.joint_encoder = gaussian_mlp(sum(input_width(mod) for mod in schema) + m, c.joint_hidden, m * d)
        self.mask_decoder = MLP(m * d, c.joint_hidden, m)
        self.decoder = JointDecoder(schema, m * d + (m if c.decoder_mask == "reconstructed" else 0), c.joint_hidden)

    @property
    def latent_size(self) -> int:
        return len(self.schema) * self.config.latent_dim

    def default_schedules(self) -> dict:
        return {"unobserved": {"start": 0.0, "end": 1.0, "epochs": self.config.warmup, "kind": "step"}}

    def encode(self, batch: Batch) -> Gaussian:
        """The selective proposal, blocks concatenated: ``[B, M * latent_dim]``."""
        n, d = len(batch), self.config.latent_dim
        joint = self.joint_encoder(joint_input(batch, self.config.fill, with_mask=True))
        joint = Gaussian(joint.mean.view(n, -1, d), joint.var.view(n, -1, d))
        own = [self.encoders[name](batch.values[name]) for name in self.schema.names]
        observed = batch.presence().T.unsqueeze(-1)  # [B, M, 1]
        mean = torch.where(observed, torch.stack([e.mean for e in own], 1), joint.mean)
        var = torch.where(observed, torch.stack([e.var for e in own], 1), joint.var)
        return Gaussian(mean.reshape(n, -1), var.reshape(n, -1))

    def mask_logits(self, z: Tensor) -> Tensor:
        return self.mask_decoder(z)

    def decode(self, z: Tensor) -> dict[str, Observation]:
        h = z
        if self.config.decoder_mask == "reconstructed":
            h = torch.cat([z, torch.sigmoid(self.mask_logits(z)).detach()], -1)
        return self.observations(self.decoder(h))

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        """The bound with KL weight ``beta`` and the weight ``unobserved`` of the pseudo-target term."""
        unobserved = weights.get("unobserved", 1.0)
        bound, terms = self.bound(batch, batch, beta, unobserved)
        if self.training and self.config.hide > 0:
            bound = bound + self.bound(drop_modalities(batch, self.config.hide), batch, beta, unobserved)[0]
        return LossOutput(-bound.mean(), terms)

    def bound(self, inputs: Batch, batch: Batch, beta: float, unobserved: float) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sample bound with the proposal given ``inputs`` and the likelihood scoring
        ``batch`` (the same batch, or one with some modalities hidden from the proposal)."""
        q = self.encode(inputs)
        if unobserved > 0:
            with torch.no_grad():
                targets = {name: obs.point.to(batch.values[name].dtype) for name, obs in self.decode(q.rsample()).items()}
        k = self.config.samples
        z = q.rsample((k,))  # [K, B, D]
        decoded = self.decode(z)
        recon = self.reconstruction(batch, decoded)
        pseudo = torch.zeros_like(recon)
        if unobserved > 0:  # the unobserved entries, scored against the pseudo-targets
            pseudo = self.reconstruction(Batch(batch.schema, targets, {n: ~m for n, m in batch.observed.items()}), decoded)
        mask = self.log_mask(batch, z)
        prior = self.prior((len(batch),))
        if k == 1:
            kl = q.kl(prior)
            bound = (recon + unobserved * pseudo + mask)[0] - beta * kl
        else:
            kl = (q.log_prob(z) - prior.log_prob(z)).mean(0)
            bound = log_mean_exp(recon + unobserved * pseudo + mask - beta * (q.log_prob(z) - prior.log_prob(z)), 0)
        terms = {"recon": recon.mean().detach(), "pseudo": pseudo.mean().detach(), "mask": mask.mean().detach(),
                 "kl": kl.mean().detach()}
        return bound, terms

    def log_mask(self, batch: Batch, z: Tensor) -> Tensor:
        """log p(m | z) of the batch's modality mask, per sample: ``[*z.shape[:-1]]``."""
        return Bernoulli()(self.mask_logits(z)[..., None], 1).log_prob(batch.presence().T.to(z.dtype))

    def log_joint(self, batch: Batch, z: Tensor, decoded: dict[str, Observation]) -> Tensor:
        """log p(x_o, m, z): importance weights of the data *and the mask*."""
        return super().log_joint(batch, z, decoded) + self.log_mask(batch, z)

    @query
    def generate(self, n: int, sample: bool = False) -> Batch:
        """``n`` joint samples of data and mask: values of every modality, and ``observed``
        drawn from the mask decoder (a modality's entries share its draw)."""
        self.check_arguments("generate", n=n)
        z = self.prior((n,)).sample()
        decoded = self.decode(z)
        present = torch.bernoulli(torch.sigmoid(self.mask_logits(z))).bool()  # [n, M]
        values, observed = {}, {}
        for i, (name, obs) in enumerate(decoded.items()):
            values[name] = obs.sample() if sample else obs.point
            observed[name] = present[:, i].view(n, *[1] * (values[name].dim() - 1)).expand_as(values[name])
        return Batch(self.schema, values, observed)
