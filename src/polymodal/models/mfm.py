r"""MFM: the multimodal factorisation model (Tsai, Liang, Zadeh, Morency & Salakhutdinov, ICLR 2019).

One modality is the *label* y (``label``; by default the schema's one categorical static
modality), the others are the inputs x_1..x_M. The latent is factorised into a shared,
discriminative Z_y and one generative Z_ai per input, each with prior N(0, I):

    F_y = G_y(Z_y),   F_ai = G_ai(Z_ai),   y^ = D(F_y),   x^_i = F_i(F_ai, F_y).

Encoders are deterministic (a Wasserstein autoencoder): Z_y = Q(x_1..x_M) by late fusion, a
linear map of the concatenated per-modality features, and Z_ai = Q_i(x_i) from modality i's
features alone; a sequential modality's features come from a recurrent encoder (hidden states averaged over the observed
steps with ``pool="mean"``, or the last one) and its decoder F_i is unrolled over the steps
(``nets.FeatureEncoder``, ``nets.FactorDecoder``).
The objective (paper Eq. 4) is

    min  E_data[ sum_i lambda_i c(x_i, x^_i) + lambda_y c(y, y^) ] + lambda_mmd MMD(Q_Z, P_Z),

with c = -log p, each modality's own likelihood (the paper's squared l2 is the Gaussian case,
the label's cross-entropy the categorical one), summed over the observed entries, and the MMD
of :func:`polymodal.metrics.mmd` (kernel exp(-||a - b||^2 / bandwidth), bandwidth d^2 for
d-dimensional codes by default, as the reference code) between the batch's codes and as many
N(0, I) draws.

Missing modalities: the surrogate Q_Phi infers Z_y and the Z_ai of the missing inputs from
whatever a sample observes (the paper's Eq. 5; the observed inputs keep their own Z_ai, which
needs only x_i). Following the reference code it is trained jointly with the model, by latent
regression onto the full model's codes, reconstruction of every observed modality from the
surrogate codes and the label from the surrogate Z_y. Per sample:

* all inputs present: the term above, plus the surrogate's terms for one missingness pattern
  drawn uniformly among those with at least one input present and one missing,

      sum_i lambda_i c(x_i, x^_i(Z^Phi)) + lambda_y c(y, y^(Z^Phi)) + ||Z^Phi - sg(Z)||^2;

* some input missing: the surrogate's terms for its own pattern, without the regression (no
  full code exists); rows observing no input contribute nothing.

Modality dropout (``modality_dropout`` = p, 0.25 by default; neither the paper nor the code has
it): in training, each complete row loses one input, drawn uniformly, with probability p, from
the fusion that gives its full-model Z_y (that input's features are zeroed there); its Z_ai, the
reconstruction of every input and the label are scored as above, so the full model's term is

    E_keep[ sum_i lambda_i c(x_i, x^_i(Z_y(x_keep), Z_ai)) + lambda_y c(y, y^(Z_y(x_keep))) ],

keep = every input with probability 1 - p, else all but one. Rows that miss an input in the
data are left as they are (only the surrogate's terms). The surrogate still regresses onto
the codes of every input, and prediction always fuses every input a sample has.

The MMD compares the codes each row is decoded from (full or surrogate) with the prior. The
surrogate reads the full model's per-input features; its head is one network conditioned on
the presence mask (``surrogate="mask"``, the default: one head for the 2^M - 2 patterns, and
unpaired samples of every pattern train the same weights; on the digit styles it matches the
per-pattern heads), or one per pattern, as the paper (``"pattern"``). ``predict``,
``embed``, ``reconstruct`` and ``impute`` use the surrogate exactly for the samples that lack
an input, so mixed availability in one batch works; ``surrogate=False`` gives the zero-fill
baseline instead (the full model reading zeros for a missing input).

Ablations (the paper's comparisons): ``objective="discriminative"`` drops the generative
factors and decoders (Z_y -> y only, with the MMD); ``"generative"`` drops the label loss and
predicts the label from a probe, a decoder trained on the detached code sg(Z) (all blocks),
so that the label teaches the encoders nothing; ``factorised=False`` keeps one shared latent,
of the same total size, from which every modality and the label are decoded.

Where we differ from the paper and the reference code, and why:

* ``mmd``: ``"joint"`` (the paper: one MMD on the whole Z) or ``"block"`` (the code: one per
  latent block, summed); the kernel and its d^2 bandwidth are the code's.
* The costs are the modalities' log-likelihoods summed over entries (the paper's sum; the code
  takes elementwise means of MSE and an L1 label loss), so losses of different modalities are
  balanced by the ``weights`` lambda, as in every model here.
* The regression targets are detached (``pull_encoders=False``); the code does not detach,
  which also pulls the full model's encoders toward the surrogate.
* Training data may miss modalities per sample (the code trains on complete data only); the
  code's reconstruction term for a missing third modality decodes the wrong surrogate (its
  v-term bug); here every modality is decoded from its own codes.
* The surrogate reads the same per-modality features as the full model and adds only its
  head (one, or one per pattern); the paper and the code train separate surrogate encoders.
  Sharing them lets the surrogate's terms teach each input's encoder to carry the label on
  its own, which also helps the full model: on the digit styles (seed 0, 30 epochs) label
  accuracy rose from 0.946 to 0.981 with both inputs and from 0.758 to 0.864 from the print
  alone, at half the training time.
* Modality dropout is ours: trained on BasicMotions' 32 sequences without it, MFM with both
  sensors scored below the better sensor alone (read by the surrogate) on some splits, e.g.
  0.95 against the gyroscope's 0.975 (``python -m benchmarks.mfm --part motions --seeds 1
  --variants "MFM, no modality dropout"``); the dropout trains the fusion to carry the label from
  each input alone as well as from both. ``modality_dropout=0`` is the paper's objective.
* Nets are the library's (SiLU MLPs, conv nets for images, GRU or LSTM for sequences) rather
  than the MFN fusion and the code's LSTM cells; G_y and G_a are MLPs with SiLU outputs. A
  sequence's features average the recurrent states over its observed steps (``pool="mean"``);
  the code reads the last state (``pool="last"``), which on BasicMotions' 32 training
  sequences of 100 steps learned far worse in our runs (label accuracy 0.50 against 0.80 for
  the discriminative ablation, one seed).

MFM defines no tractable density, so importance sampling (``log_likelihood``, ``impute`` with
``samples``) refuses; ``encode`` returns the code as a point mass (``Gaussian.point``), so the
shared API and metrics that read posterior means work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, WEIGHTS, ConfigError, Weights, checked
from ..data import Batch
from ..gaussian import Gaussian
from ..likelihoods import Observation
from ..metrics import mmd
from ..modalities import Schema
from ..nets import MLP, Decoder, FactorDecoder, FeatureEncoder, SiLU
from .base import DENSITY_QUERIES, QUERIES, LossOutput, ModalityDict, Model, query


@dataclass
@checked(shared_dim=AT_LEAST_ONE, modality_dim=AT_LEAST_ONE, factor_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE,
         channels=AT_LEAST_ONE, rnn_hidden=AT_LEAST_ONE, cell=("gru", "lstm"), pool=("last", "mean"), weights=WEIGHTS,
         mmd_weight=NON_NEGATIVE, mmd=("joint", "block"), bandwidth=POSITIVE,
         objective=("hybrid", "discriminative", "generative"), surrogate=("mask", "pattern"), modality_dropout=FRACTION)
class MFMConfig:
    label: str | None = None
    shared_dim: int = 16
    modality_dim: int = 8
    factor_dim: int = 32
    hidden: tuple[int, ...] = (256,)
    channels: tuple[int, ...] = (32, 64)
    rnn_hidden: int = 64
    cell: str = "gru"
    pool: str = "mean"
    weights: Weights = field(default_factory=dict)
    mmd_weight: float = 1.0
    mmd: str = "joint"
    bandwidth: float | None = None
    objective: str = "hybrid"
    factorised: bool = True
    surrogate: str = "mask"
    pull_encoders: bool = False
    modality_dropout: float = 0.25


class Surrogate(nn.Module):
    """Q_Phi's head: the features of the inputs a sample observes (zero for the others)
    beside its presence mask -> every code ``[B, latent]``."""

    def __init__(self, inputs: int, width: int, hidden: tuple[int, ...], latent: int):
        super().__init__()
        self.head = MLP(inputs * (width + 1), hidden, latent)

    def forward(self, features: list[Tensor], present: Tensor) -> Tensor:
        h = [x * present[i, :, None] for i, x in enumerate(features)]
        return self.head(torch.cat([*h, present.T.float()], -1))


class MFM(Model):
    name = "mfm"
    Config = MFMConfig
    data = "any"
    has_density = False
    queries = QUERIES - DENSITY_QUERIES
    loss_weights = frozenset()

    def __init__(self, schema: Schema, config: MFMConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        self.label = _label(schema, c.label)
        self.inputs = [m for m in schema if m.name != self.label]
        self.generative = c.objective != "discriminative"
        self.factorised = c.factorised and self.generative
        extra = 0 if self.factorised or not self.generative else len(self.inputs) * c.modality_dim
        sizes = {"y": c.shared_dim + extra, **({m.name: c.modality_dim for m in self.inputs} if self.factorised else {})}
        self.blocks: dict[str, slice] = {}
        start = 0
        for name, size in sizes.items():
            self.blocks[name] = slice(start, start + size)
            start += size
        self._latent_size = start
        width = c.hidden[-1]
        self.features = ModalityDict({m.name: FeatureEncoder(m, width, c.hidden[:-1], c.channels, c.rnn_hidden, c.cell, c.pool)
                                      for m in self.inputs})
        self.to_y = nn.Linear(len(self.inputs) * width, sizes["y"])
        self.g_y = nn.Sequential(MLP(sizes["y"], c.hidden, c.factor_dim), SiLU())
        if self.factorised:
            self.to_a = ModalityDict({m.name: nn.Linear(width, c.modality_dim) for m in self.inputs})
            self.g_a = ModalityDict({m.name: nn.Sequential(MLP(c.modality_dim, c.hidden, c.factor_dim), SiLU())
                                     for m in self.inputs})
        if self.generative:
            code = c.factor_dim * (2 if self.factorised else 1)
            self.decoders = ModalityDict({m.name: FactorDecoder(m, code, c.hidden, c.channels, c.rnn_hidden, c.cell)
                                          for m in self.inputs})
        # The probe of the purely generative ablation reads the whole (detached) code.
        probe = c.objective == "generative"
        self.label_decoder = Decoder(schema[self.label], self.latent_size if probe else c.factor_dim, c.hidden)
        # The training patterns of complete rows: every set of inputs with one present and one missing.
        m = len(self.inputs)
        patterns = [p for p in product([True, False], repeat=m) if any(p) and not all(p)]
        self.register_buffer("patterns", torch.tensor(patterns, dtype=torch.bool).view(-1, m), persistent=False)
        if not patterns:
            return  # one input: a sample missing it observes nothing to infer from
        head = (len(self.inputs), width, c.hidden, self.latent_size)
        if c.surrogate == "mask":
            self.surrogate = Surrogate(*head)
        else:
            self.surrogates = nn.ModuleDict({_key(p): Surrogate(*head) for p in patterns})

    @property
    def latent_size(self) -> int:
        return self._latent_size

    def present(self, batch: Batch) -> Tensor:
        """``[M, B]``: whether each input has any observed entry."""
        return torch.stack([batch.observed[m.name].reshape(len(batch), -1).any(1) for m in self.inputs])

    def features_of(self, batch: Batch) -> list[Tensor]:
        """Each input's features ``[B, width]``, read by the full model and the surrogate alike."""
        return [self.features[m.name](batch.values[m.name], batch.observed[m.name]) for m in self.inputs]

    def full_codes(self, features: list[Tensor], fused: Tensor | None = None) -> Tensor:
        """The full model's codes ``[B, latent]``: Z_y by late fusion, then each Z_ai. ``fused``
        ``[M, B]`` says which inputs the fusion reads (all by default; modality dropout zeroes
        the others' features there), each Z_ai always reads its own input."""
        fusion = features if fused is None else [x * fused[i, :, None] for i, x in enumerate(features)]
        codes = [self.to_y(torch.cat(fusion, -1))]
        if self.factorised:
            codes += [self.to_a[m.name](x) for m, x in zip(self.inputs, features)]
        return torch.cat(codes, -1)

    def surrogate_codes(self, features: list[Tensor], present: Tensor, full: Tensor) -> Tensor:
        """Codes given only the inputs ``present`` ``[M, B]``: Q_Phi's Z_y and its Z_ai of the
        missing inputs; the present inputs keep their own Z_ai from ``full``."""
        if self.config.surrogate == "mask":
            inferred = self.surrogate(features, present)
        else:
            inferred = torch.zeros_like(full)
            for key, net in self.surrogates.items():
                rows = (present.T == _pattern(key, present.device)).all(1)
                inferred = torch.where(rows[:, None], net(features, present), inferred)
        keep = torch.zeros_like(full, dtype=torch.bool)
        if self.factorised:
            for i, m in enumerate(self.inputs):
                keep[:, self.blocks[m.name]] = present[i, :, None]
        return torch.where(keep, full, inferred)

    def codes(self, batch: Batch, surrogate: bool = True) -> Tensor:
        """Each sample's codes: the full model's when it has every input (or when not
        ``surrogate``: the zero-fill baseline), else the surrogate's."""
        features = self.features_of(batch)
        full = self.full_codes(features)
        present = self.present(batch)
        complete = present.all(0)
        if not surrogate or complete.all() or not len(self.patterns):
            return full
        return torch.where(complete[:, None], full, self.surrogate_codes(features, present, full))

    def encode(self, batch: Batch) -> Gaussian:
        return Gaussian.point(self.codes(batch))

    def decode(self, z: Tensor, steps: int | None = None) -> dict[str, Observation]:
        """Likelihoods of every input (unless discriminative) and of the label given codes
        ``[*lead, latent]``; ``steps`` is the length of sequential modalities."""
        f_y = self.g_y(z[..., self.blocks["y"]])
        params = {}
        if self.generative:
            for m in self.inputs:
                f = torch.cat([self.g_a[m.name](z[..., self.blocks[m.name]]), f_y], -1) if self.factorised else f_y
                params[m.name] = self.decoders[m.name](f, steps)
        params[self.label] = self.label_decoder(z.detach() if self.config.objective == "generative" else f_y)
        return self.observations(params)

    def cost(self, batch: Batch, z: Tensor) -> Tensor:
        """sum_m lambda_m c(x_m, x^_m) per sample over the observed entries: ``[B]``."""
        return -self.reconstruction(batch, self.decode(z, _steps(batch)))

    def discrepancy(self, z: Tensor) -> Tensor:
        """MMD between codes ``[B, latent]`` and as many N(0, I) draws: on the joint code, or
        summed over its blocks."""
        c = self.config
        if c.mmd == "joint":
            return mmd(z, torch.randn_like(z), c.bandwidth)
        return sum(mmd(z[:, s], torch.randn_like(z[:, s]), c.bandwidth) for s in self.blocks.values())

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        present = self.present(batch)
        complete = present.all(0).float()
        features = self.features_of(batch)
        full = self.full_codes(features)
        fused = self.dropped(complete.bool())
        # The full model fits from the fusion with dropped inputs; the surrogate regresses onto
        # the codes of every input.
        fitted = full if fused is None else self.full_codes(features, fused)
        fit = self.cost(batch, fitted) * complete
        surrogate, regression = torch.zeros_like(fit), torch.zeros_like(fit)
        if len(self.patterns):
            drawn = self.patterns[torch.randint(len(self.patterns), (len(batch),), device=full.device)].T
            pattern = torch.where(complete.bool(), drawn, present)
            inferred = self.surrogate_codes(features, pattern, full)
            target = full if self.config.pull_encoders else full.detach()
            surrogate = self.cost(batch, inferred) * pattern.any(0)
            regression = ((inferred - target) ** 2).sum(-1) * complete
            z = torch.where(complete.bool()[:, None], fitted, inferred)
        else:
            z = fitted
        discrepancy = self.discrepancy(z)
        loss = (fit + surrogate + regression).mean() + self.config.mmd_weight * discrepancy
        terms = {"cost": fit.mean(), "surrogate": surrogate.mean(), "regression": regression.mean(), "mmd": discrepancy}
        return LossOutput(loss, {k: v.detach() for k, v in terms.items()})

    def dropped(self, complete: Tensor) -> Tensor | None:
        """Modality dropout: ``[M, B]``, which inputs the full model's fusion reads in this step;
        each complete row loses one input, drawn uniformly, with probability ``modality_dropout``.
        ``None`` when nothing is dropped (the option off, one input, or not training)."""
        p = self.config.modality_dropout
        if not (p and self.training and len(self.inputs) > 1):
            return None
        rows = (torch.rand(complete.shape, device=complete.device) < p) & complete
        which = torch.randint(len(self.inputs), complete.shape, device=complete.device)
        inputs = torch.arange(len(self.inputs), device=complete.device)[:, None]
        return ~(rows & (inputs == which))

    @query
    def embed(self, batch: Batch, surrogate: bool = True) -> Tensor:
        """Each sample's codes [Z_y, Z_a1, ..., Z_aM] (see :meth:`codes`); :attr:`blocks`
        says which columns hold which."""
        self.check_arguments("embed", batch)
        return self.codes(batch.to(self.device), surrogate)

    @query
    def reconstruct(self, batch: Batch, surrogate: bool = True) -> dict[str, Observation]:
        """Likelihoods decoded from each sample's codes (the surrogate's where an input is missing)."""
        return self.decode(self.embed(batch, surrogate), _steps(batch))

    @query
    def predict(self, batch: Batch, target: str, inputs: list[str] | None = None, proba: bool = False,
                surrogate: bool = True) -> Tensor:
        """As :meth:`Model.predict`; a sample lacking an input is read by the surrogate, or with
        ``surrogate=False`` by the full model with the missing input zero-filled."""
        if not self.generative and target != self.label:
            raise ConfigError(f"MFM(objective='discriminative') predicts only the label {self.label!r}, not {target!r}")
        return super().predict(batch, target, inputs, proba, surrogate=surrogate)

    @query
    def impute(self, batch: Batch, samples: int = 0, chunk: int = 100) -> Batch:
        """Fill the unobserved entries from the decoded codes (``samples`` must be 0: MFM's
        encoders are deterministic and it defines no importance weights)."""
        if not self.generative:
            raise ConfigError("MFM(objective='discriminative') decodes only the label; it cannot impute the inputs")
        return super().impute(batch, samples, chunk)

    @query
    def generate(self, n: int, sample: bool = False, steps: int | None = None,
                 codes: dict[str, Tensor] | None = None) -> Batch:
        """``n`` samples decoded from codes drawn from N(0, I), except the blocks given in
        ``codes`` (``"y"`` or an input's name -> ``[block]`` or ``[n, block]``), which are fixed:
        fixing Z_y and drawing the Z_ai varies the style and keeps the content (paper Fig. 2).
        ``steps`` is the length of sequential modalities."""
        self.check_arguments("generate", n=n)
        z = torch.randn(n, self.latent_size, device=self.device)
        for name, value in (codes or {}).items():
            if name not in self.blocks:
                raise ConfigError(f"MFM.generate: unknown latent block {name!r}; the blocks are {list(self.blocks)}")
            block = self.blocks[name]
            value = torch.as_tensor(value, dtype=z.dtype, device=z.device)
            size = block.stop - block.start
            if value.shape not in ((size,), (n, size)):
                raise ValueError(f"MFM.generate: codes[{name!r}] must have shape ({size},) or ({n}, {size}), "
                                 f"got {tuple(value.shape)}")
            z[:, block] = value.expand(n, -1)
        if steps is None and any(m.sequential for m in self.inputs):
            raise ValueError("MFM.generate: the schema has sequential modalities; pass steps")
        return self.drawn(self.decode(z, steps), sample)


def _label(schema: Schema, label: str | None) -> str:
    """The label modality: the one named, else the schema's one categorical static modality."""
    if label is None:
        found = [m.name for m in schema if m.categorical and not m.sequential]
        if len(found) != 1:
            raise ConfigError(f"MFM: name the label modality (label=...); the schema has {len(found)} categorical "
                              f"static modalities {found}")
        label = found[0]
    if label not in schema:
        raise ConfigError(f"MFM: label {label!r} is not a modality; the schema has {schema.names}")
    if schema[label].sequential:
        raise ConfigError(f"MFM: the label {label!r} must be static (one per sample), not sequential")
    if len(schema) < 2:
        raise ConfigError(f"MFM needs at least one input modality besides the label {label!r}")
    return label


def _key(pattern: tuple[bool, ...]) -> str:
    return "".join("1" if p else "0" for p in pattern)


def _pattern(key: str, device: torch.device) -> Tensor:
    return torch.tensor([k == "1" for k in key], device=device)


def _steps(batch: Batch) -> int | None:
    return next((batch.values[m.name].shape[1] for m in batch.schema if m.sequential), None)
