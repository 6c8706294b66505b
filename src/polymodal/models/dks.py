r"""RNN inference baselines for the deep Markov model: F-Mask, F-Skip, B-Mask and B-Skip, the
deep Kalman smoother-style networks (Krishnan et al., 2017) that the BFVI paper compares with.

Same generative model as :class:`~polymodal.MDMM` (global prior, forward transition,
decoders). Inference: one GRU per modality reads that modality's inputs forwards
(``direction="forward"``, a summary h_t of x_{1:t}) or backwards (``"backward"``, of x_{t:T});
a combiner MLP maps [z_{t-1}, h^1_t, ..., h^M_t] to

    q(z_t | z_{t-1}, h_t) = N(mu(z_{t-1}, h_t), sigma^2(z_{t-1}, h_t)),   z_0 = 0.

``inputs`` names the modalities the GRUs read (default: all; a label to be predicted is
better left out). Missing inputs are fed as zeros (``skip=False``, "Mask") or leave the
GRU state unchanged (``skip=True``, "Skip"). After a sequence's last observed step the
posterior is the conditional prior p(z_t | z_{t-1}), as in the reference. Objective (one
sampled path, beta the KL warm-up, lambda_m the reconstruction weights, N = sum_b L_b the
steps of each sequence up to its last observed one):

    loss = -(1/N) \sum_t ( E[\sum_m lambda_m log p(x^m_t | z_t)] - beta KL(q(z_t | z_{t-1}, h_t) || p(z_t | z_{t-1})) ),

with the same burst deletion of inputs during training as BFVI.

Deliberate differences from the reference code, and why: the generative model is MDMM's
(the reference baselines use a direct transition and a fixed N(0, I) prior), so that the
comparison isolates the inference method, as the paper states it does; unobserved features
of a partly observed step are zeros (Mask) rather than dropping the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, ConfigError, checked
from ..data import Batch
from ..gaussian import Gaussian, kl_divergence, stack, where
from ..modalities import Schema
from ..nets import MLP, ExpertHead, SiLU, flat_input, input_width
from .base import LossOutput, ModalityDict
from .dmm import DeepMarkovModel, DMMConfig


@dataclass
@checked(direction=("forward", "backward"), rnn_hidden=AT_LEAST_ONE)
class DKSConfig(DMMConfig):
    direction: str = "forward"
    skip: bool = False
    rnn_hidden: int = 20


class DKS(DeepMarkovModel):
    name = "dks"
    Config = DKSConfig

    def __init__(self, schema: Schema, config: DKSConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        if c.direction not in ("forward", "backward"):
            raise ConfigError(f"DKS: direction must be 'forward' or 'backward', got {c.direction!r}")
        widths = {n: input_width(schema[n]) for n in self.input_names}
        self.rnns = ModalityDict({
            n: nn.GRUCell(w, c.rnn_hidden) if c.skip else nn.GRU(w, c.rnn_hidden, batch_first=True) for n, w in widths.items()
        })
        width = c.latent_dim + len(self.input_names) * c.rnn_hidden
        body: list[nn.Module] = [MLP(width, c.hidden[:-1], c.hidden[-1]), SiLU()] if c.hidden else []
        self.combiner = nn.Sequential(*body, ExpertHead(c.hidden[-1] if c.hidden else width, c.latent_dim))

    @property
    def label(self) -> str:
        """The paper's name for this variant, e.g. ``"F-Mask"``."""
        return f"{self.config.direction[0].upper()}-{'Skip' if self.config.skip else 'Mask'}"

    def summaries(self, batch: Batch) -> Tensor:
        """``[B, T, len(inputs) * rnn_hidden]``: each input modality's GRU state after reading
        its inputs in the configured direction; backwards, each sequence is read from its own
        last observed step (any input), so padding after it changes nothing, and the state
        after that step is zero."""
        backward = self.config.direction == "backward"
        if backward:
            last = self.valid_steps(batch, self.input_names).sum(1) - 1
        states = []
        for m in (self.schema[n] for n in self.input_names):
            x = flat_input(m, batch.values[m.name], batch.observed[m.name])
            present = batch.present(m.name)
            if backward:
                x, present = reverse_within(x, last), reverse_within(present, last)
            if self.config.skip:
                h = x.new_zeros(x.shape[0], self.config.rnn_hidden)
                out = []
                for t in range(x.shape[1]):
                    h = torch.where(present[:, t, None], self.rnns[m.name](x[:, t], h), h)
                    out.append(h)
                h = torch.stack(out, 1)
            else:
                h = self.rnns[m.name](x)[0]
            states.append(reverse_within(h, last) if backward else h)
        return torch.cat(states, -1)

    def posterior(self, batch: Batch, sample: bool = True) -> tuple[Gaussian, Gaussian, Tensor]:
        """The posteriors q(z_t | z_{t-1}, h_t), the conditional priors p(z_t | z_{t-1}) (each
        ``[B, T, D]``) along one path, and the path (samples, or means when ``sample`` is False)."""
        h = self.summaries(batch)
        b = h.shape[0]
        after = ~self.valid_steps(batch, self.input_names)  # [B, T]
        z = h.new_zeros(b, self.config.latent_dim)
        posts, path = [], []
        for t, h_t in enumerate(h.unbind(1)):  # unbind: indexing per step would cost a full-size gradient each
            q = self.combiner(torch.cat([z, h_t], -1))
            if after[:, t].any():
                conditional = self.prior((b,)) if t == 0 else self.transition(z)
                q = where(after[:, t], conditional, q)
            z = q.rsample() if sample else q.mean
            posts.append(q)
            path.append(z)
        path = torch.stack(path, 1)
        first, rest = self.prior((b, 1)), self.transition(path[:, :-1])
        priors = Gaussian(torch.cat([first.mean, rest.mean], 1), torch.cat([first.var, rest.var], 1))
        return stack(posts, 1), priors, path

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        posts, priors, z = self.posterior(self.training_inputs(batch))
        reconstruction = self.reconstruction(batch, self.decode(z), self.rescaled(batch)).sum()
        kl = kl_divergence(posts, priors).sum()
        n = self.sequence_steps(batch)
        elbo = (reconstruction - beta * kl) / n
        return LossOutput(-elbo, {"elbo": elbo.detach(), "kl": kl.detach() / n})

    def sampler(self, batch: Batch) -> Callable[[int], tuple[Tensor, Tensor]]:
        """Whole latent paths from the inference network, with their log-density
        sum_t log q(z_t | z_{t-1}, h_t): the batch repeated ``k`` times through one pass."""
        batch = batch.to(self.device)

        def draw(k: int) -> tuple[Tensor, Tensor]:
            posts, _, path = self.posterior(batch.select(torch.arange(len(batch), device=self.device).repeat(k)))
            shape = (k, len(batch), *path.shape[1:])
            return path.view(shape), posts.log_prob(path).sum(-1).view(k, len(batch))

        return draw

    def encode(self, batch: Batch) -> Gaussian:
        """The posteriors along the mean path given what is observed: ``[B, T, D]``."""
        return self.posterior(batch.to(self.device), sample=False)[0]


def reverse_within(x: Tensor, last: Tensor) -> Tensor:
    """``x`` ``[B, T, ...]`` with each sequence's steps 0..last_b reversed and the steps after
    ``last`` ``[B]`` zeroed (its own inverse on the reversed part)."""
    steps = torch.arange(x.shape[1], device=x.device)
    index = (last[:, None] - steps).clamp(min=0)  # [B, T]
    inside = steps <= last[:, None]
    shape = (*index.shape, *(1,) * (x.dim() - 2))
    picked = x.gather(1, index.view(shape).expand(-1, -1, *x.shape[2:]))
    return torch.where(inside.view(shape), picked, torch.zeros((), dtype=x.dtype, device=x.device))
