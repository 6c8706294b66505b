r"""MVAE: multimodal VAE with a product-of-experts posterior (Wu & Goodman, NeurIPS 2018).

Generative model: p(z) = N(0, I),  p(x_1..x_M, z) = p(z) \prod_m p(x_m | z).

Inference: the posterior given any subset X of modalities is a product of experts with
the prior expert always included,

    q(z | X) \propto p(z) \prod_{m in X} \tilde q(z | x_m),

where each encoder outputs \tilde q(z | x_m), a Gaussian read as q(z | x_m) / p(z).
With MVAE-Q (``quotient=True``) encoders output full posteriors q(z | x_m) and

    q(z | X) \propto \prod_{m in X} q(z | x_m) / p(z)^{|X| - 1},

which is proper because each expert's variance is kept below M / (M - 1).

Objective (the sub-sampled ELBO), for one sample, with likelihood weights lambda_m and KL
weight beta (warmed up by the trainer):

    ELBO(X) = E_{q(z|X)}[ \sum_{m in X} lambda_m log p(x_m | z) ] - beta KL(q(z|X) || p(z))
    loss    = -[ ELBO(x_1..x_M) + \sum_m ELBO(x_m) + \sum_{j=1..k} ELBO(X_j) ],

averaged over the batch, with k random subsets X_j drawn uniformly among the subsets of
size 2 .. M-1 at every step.

Partially observed data: every term uses only what the sample has. A sample's term for
subset X uses X intersected with its observed modalities, terms left empty are dropped, and
terms that coincide after intersection are counted once; so a sample with one modality
contributes exactly that modality's ELBO, as in the paper's weak-supervision experiments.
Within an observed modality, unobserved features are left out of log p(x_m | z).
Experts are computed once per batch and shared by all subsets.

Where we differ from the reference code, and why:

* Per-sample masks (the code drops a modality for a whole minibatch), so mixed
  availability in one batch is trained correctly.
* Encoder variances are ``softplus(.) + 1e-4`` rather than ``exp(logvar)`` unclamped:
  same family, but a product of many experts cannot overflow.
* Deduplicated terms: the code would count a one-modality sample's ELBO twice (joint and
  single), weighting unpaired data double.
* Random subsets are uniform over subsets of size 2 .. M-1 (the CelebA-19 code first draws a
  size uniformly), and every term uses the lambda weights (the code forgets them in some).
* The lambda weights default to ``"auto"`` (:func:`~polymodal.models.base.auto_weights`:
  sqrt(max_k D_k / D_m), e.g. 28 for a label beside a 28 x 28 image), not 1: the paper tunes
  lambda_label = 50 by hand, and with 1 a label weighs too little to be read from an image.
  On MNIST with 2% / 5% of the labels ``cross=True`` reads the label from the image at 0.765 /
  0.839 with it (5 seeds), against 0.732 / 0.841 with the entries' ratio max_k D_k / D_m
  (784) and 0.741 / 0.811 for logistic regression on the labelled images; on the scikit-learn
  digits it is within one SD of 50 (0.971 / 0.886 against 0.979 / 0.897 with all / 10%
  paired). docs/guides/models.md gives the commands. ``weights={}`` is the ELBO.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import torch
from torch import Tensor

from ..config import NON_NEGATIVE, Weights, checked
from ..data import Batch
from ..gaussian import Gaussian
from ..modalities import Schema
from .base import LatentConfig, LossOutput, PerModality


@dataclass
@checked(subsets=NON_NEGATIVE)
class MVAEConfig(LatentConfig):
    weights: Weights = "auto"
    subsets: int = 1
    quotient: bool = False
    cross: bool = False


class MVAE(PerModality):
    name = "mvae"
    Config = MVAEConfig

    def __init__(self, schema: Schema, config: MVAEConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c, m = self.config, len(schema)
        # Built once, on the model's device: the joint and single subsets, and for the k random ones the
        # distribution of their size s in 2 .. M-1, P(s) proportional to the number of subsets of size s.
        k = c.subsets if m > 2 else 0
        fixed = torch.cat([torch.ones(1, m, dtype=torch.bool), torch.eye(m, dtype=torch.bool)])
        counts = torch.tensor([float(comb(m, s)) if s >= 2 else 0.0 for s in range(m)], dtype=torch.float64)
        self.register_buffer("fixed_subsets", fixed, persistent=False)
        self.register_buffer("size_cdf", (counts.cumsum(0) / counts.sum()).float(), persistent=False)
        # The rows of the subset axis whose terms score each modality: the joint, its single, the k random ones.
        rows = [list(range(m + 1 + k)) if c.cross else [0, 1 + i, *range(m + 1, m + 1 + k)] for i in range(m)]
        for i, r in enumerate(rows):
            self.register_buffer(f"rows_{i}", torch.tensor(r), persistent=False)

    @property
    def max_var(self) -> float | None:
        """MVAE-Q's experts stay below M / (M - 1), so that their quotient is proper."""
        m = len(self.schema)
        return m / (m - 1) - 2e-4 if self.config.quotient and m > 1 else None

    def posterior(self, experts: Gaussian, use: Tensor) -> Gaussian:
        """q(z | X) for modality masks ``use`` ``[..., M, B]``: the prior times the used experts
        (divided by the prior once per used expert but one, for MVAE-Q); returns ``[..., B, D]``."""
        prior = self.prior(tuple(experts.shape[1:-1]))
        product = experts.masked(use).prod(-3)
        if self.config.quotient:
            return (product * prior ** (1.0 - use.sum(-2))).gaussian()
        return (prior * product).gaussian()

    def encode(self, batch: Batch) -> Gaussian:
        return self.posterior(self.experts(batch), batch.presence())

    def subsets(self) -> Tensor:
        """``[S, M]`` modality subsets of this step: joint, each single, then k drawn uniformly
        among the subsets of sizes 2 .. M-1 (a size by its number of subsets, then that many
        modalities at random), without leaving the device."""
        k, m = self.config.subsets, len(self.schema)
        if m <= 2 or not k:
            return self.fixed_subsets
        sizes = torch.searchsorted(self.size_cdf, torch.rand(k, 1, device=self.size_cdf.device), right=True)
        ranks = torch.rand(k, m, device=sizes.device).argsort(1).argsort(1)
        return torch.cat([self.fixed_subsets, ranks < sizes])

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        use = self.subsets()[:, :, None] & batch.presence()  # [S, M, B]: what each term conditions on
        q = self.posterior(self.experts(batch), use)  # q(z | X_s): [S, B, D]
        z = q.rsample()
        recon = sum(self.scored(batch, z, use, m) for m in range(len(self.schema)))  # [S, B]
        kl = q.kl(self.prior(tuple(q.shape[:-1])))
        counted = _distinct(use).to(kl.dtype)
        n = len(batch)
        loss = -((recon - beta * kl) * counted).sum() / n
        return LossOutput(loss, {"recon": (recon * counted).sum().detach() / n, "kl": (kl * counted).sum().detach() / n})

    def scored(self, batch: Batch, z: Tensor, use: Tensor, m: int) -> Tensor:
        """``[S, B]``: lambda_m log p(x_m | z_s) in each term s that scores modality m (those
        whose subset has m; all, with ``cross``), decoding m only at those terms' latents."""
        name, rows = self.schema.names[m], getattr(self, f"rows_{m}")
        decoded = {name: self.observation(name, z[rows])}
        within = None if self.config.cross else {name: use[rows, m]}
        return z.new_zeros(z.shape[:-1]).index_add(0, rows, self.reconstruction(batch, decoded, within=within))


def _distinct(use: Tensor) -> Tensor:
    """``[S, B]``: term s counts for sample b if its modality set is non-empty and no earlier term has it."""
    same = (use[:, None] == use[None, :]).all(2)  # [S, S, B]
    earlier = torch.ones(same.shape[:2], dtype=torch.bool, device=use.device).tril(-1)
    return use.any(1) & ~(same & earlier[:, :, None]).any(1)
