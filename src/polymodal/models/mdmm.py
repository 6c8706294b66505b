r"""MDMM: multimodal deep Markov model, trained and queried with backward-forward variational
inference (BFVI; Tan Zhi-Xuan et al., AAAI 2020).

Generative model over steps t = 1..T with latents z_t and modalities x^m_t:

    p(z_1) = p(z),  p(z_t | z_{t-1}) \propto p(z) \tilde q_fwd(z_t | z_{t-1}),  p(x^m_t | z_t),

with a learnable global prior p(z) and gated transition networks read as quotient experts
(as in the reference code); a backward transition p(z_t | z_{t+1}) \propto p(z) \tilde q_bwd
is learned alongside.

Inference: each modality's encoder gives a quotient expert \tilde q(z_t | x^m_t) = q / p(z);
missing modalities (per step and sequence) contribute nothing. At a partly observed step
(some of a modality's entries hidden) an encoder sees zeros in place of the hidden entries
(``partial="zeros"``), or the step's expert is left out (``"drop"``, as the reference code
does), or (``"mask"``) the encoder reads the values with zeros in the gaps beside the entry
mask, so that a gap is told apart from a zero and the observed entries still count. The
encoders see a partly observed step in training only with ``entry_drop`` (each sequence's
input entries hidden at a rate drawn uniformly in [0, entry_drop], targets complete), so
without it zeros mislead them. On JapaneseVowels (200 epochs, one training seed; records
tsi/default, masked_encoder, masked_identity, whose transitions start at random unless
``transition_identity`` is named) with 10% of the entries hidden the MAE is 0.55
with zeros, 0.20 with the experts dropped, 0.25 with the masked encoders trained at
``entry_drop=0.3`` and 0.18 with them and ``transition_identity``; linear interpolation 0.12.
With half hidden (almost no step whole): 0.67, 0.92, 0.34 and 0.31, against 0.21. The masked
encoders cost whole steps: with 25% of the interior steps deleted the MSE rose from 0.042 to
0.067 (0.044 with ``transition_identity``, which alone gives 0.034; interpolation 0.028).
Hiding whole steps of every input together in training (each sequence at a rate in [0, 0.5])
did not help the deleted steps (0.050).

* Backward filtering (Algorithm 1), t = T..1, starting from q(z_T | x_{T+1:T}) = p(z):
  q(z_t | x_{t:T}) \propto q(z_t | x_{t+1:T}) \prod_m \tilde q(z_t | x^m_t); draw K particles;
  q(z_{t-1} | x_{t:T}) = moment match of (1/K) \sum_k p(z_{t-1} | z^k_t).
* Backward-forward smoothing (Algorithm 2), t = 1..T:
  q(z_t | z_{t-1}, x_{t:T}) \propto q(z_t | x_{t+1:T}) \prod_m \tilde q(z_t | x^m_t) p(z_t | z_{t-1}) / p(z),
  with p(z_1 | z_0) = p(z).

Objective per batch (beta is the KL warm-up, lambda_m the reconstruction weights):

    F(X) = \sum_t E[\sum_{m in X} lambda_m log p(x^m_t | z_t)] - beta KL(q(z_t | z_{t+1}, x_t) || p(z_t | z_{t+1}))
    S(X) = \sum_t E[\sum_{m in X} lambda_m log p(x^m_t | z_t)] - beta KL(q(z_t | z_{t-1}, x_{t:T}) || p(z_t | z_{t-1}))
    loss = [ 0.5 (F(all) + \sum_m F(m)) + 0.5 (S(all) + \sum_m S(m))
             - 0.01 beta N (KL(p(z) || MM_fwd) + KL(p(z) || MM_bwd)) ] / N,

where F uses one backward particle, S uses K_b backward particles then one forward sample,
MM_dir is the moment-matched E_{z ~ p(z)} p(z' | z) over 50 prior samples (stationarity), and
N = sum_b L_b, the steps of each sequence up to its last observed one. All input subsets
(all modalities, and each alone) run through one tensorised recursion, not one pass each.
During training each modality of each sequence loses one burst of ``burst * L_b`` input
steps (targets stay complete), as in the reference, and then single entries with
``entry_drop`` (0 by default).

Deliberate differences from the reference code, and why:

* At t = T the smoothing posterior keeps the future expert p(z) that its quotient divides
  out (the code masks the expert but still divides, giving the wrong posterior).
* The categorical likelihood uses log-softmax (the code scores probabilities, not logs).
* The gated transitions' linear paths start at the identity (``transition_identity=True``),
  as Krishnan et al. do, where the reference starts them at random: on JapaneseVowels this
  took the deleted steps of the case above from MSE 0.042 to 0.034 and the observed steps'
  reconstruction from 0.008 to 0.004 (training seed 0; seed 1: 0.040 to 0.034). For DKS
  B-Mask it changed nothing (interior MSE 0.115 against 0.117 at seed 0, 0.127 against 0.126
  at seed 1; one unrecorded 200-epoch run each).
* The transition's std floor is ``transition_min_std`` (default 1e-3, the reference's); at
  that floor the transition's precision (up to 10^6) can outweigh every encoder's.
* Encoders and decoders are the library's default nets (SiLU MLPs, variance softplus + 1e-4).
* Padding is unobserved steps. Where no evidence follows a step, its future term is p(z)
  (the reference would run the backward chain through the empty steps, which is p(z) only
  for an exactly stationary model), so trailing unobserved steps change nothing before them
  and follow the conditional prior; the loss is averaged over each sequence's steps up to
  its last observed one, N = sum_b L_b (the reference's sum of lengths), not B * T.
* lambda_m defaults to 1, the ELBO itself, not the reference's "auto" 1 / (M * features of m)
  (0.5 each for the spirals' x and y): at 0.5 two of three spiral seeds failed once the KL
  warm-up ended (the forward transition collapsed to its std floor); at 1 both of them trained
  (``python -m benchmarks.spirals --models BFVI --seed S --bfvi '{"weights": {"x": 0.5, "y": 0.5}}'``).
  Set ``weights`` to override.
* With ``rescale`` (default) each lambda_m is divided by the fraction of m's entries observed
  in the batch's targets, so that on incomplete data the reconstruction keeps its weight
  against the KL terms, which cover every step. Complete data is unaffected; for a fraction f
  of steps deleted uniformly this is the reference's 1 / (1 - f), here for any missingness.
* Input subsets are configurable (``subsets``; default: each input alone, the reference's
  unimodal copies). An input subset's terms score the modalities in it (MVAE semantics)
  and those that are targets only (not in ``inputs``, e.g. a label to predict, which then
  never informs the posterior), or, with ``cross=True``, every observed modality: still a
  valid ELBO, with the subset's posterior as proposal, and it trains what the tasks ask
  for, e.g. the label from x and y, or y from x.
* The conditional smoothing posterior is formed as future * experts * q~_fwd(z_t | z_{t-1})
  (the p(z) in p(z_t | z_{t-1}) cancels the divided-out p(z) exactly), so no precision is
  ever subtracted; every product is a sum of natural parameters.
* The smoothing ELBO's K_b-particle backward pass runs without gradient
  (``future_grad=False``): its future terms are a fixed factor of the proposal. The bound
  is unchanged; its gradient ignores the path through the 25 particles, which the
  filtering ELBO trains anyway, and a training step ran about 2.5 times faster.

What decides whether a deleted step is bridged: the observation noise. On standardised data
a Gaussian of unit scale (the likelihood's default) says that the noise is as large as the
signal, and the ELBO then gains less from carrying a step in the latent path than the KL
costs. Trained so on JapaneseVowels, the forward transition's std falls to its floor, the KL
is about 0.01 nats per step, the encoders' experts stay as wide as the prior, and the path
is a deterministic function of z_1: the observed steps come back with MSE 0.72 and a deleted
step is filled as badly, whatever its neighbours. A wider network, a higher std floor, a KL
warm-up, a learned noise scale (its optimiser stays in that state) and random step deletion
in training left it there; a scale that fits the data (0.1) ends it, and the smoother then
bridges a deleted step from both sides (benchmarks/tsi.py, ``--diagnose``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, ConfigError, checked
from ..data import Batch
from ..gaussian import POSITIVE, Experts, Gaussian, kl_divergence, moment_match, stack, where
from ..missing import drop_entries
from ..modalities import Schema
from ..nets import Encoder, GatedTransition
from .base import LossOutput, ModalityDict, query
from .dmm import DeepMarkovModel, DMMConfig


@dataclass
@checked(particles=AT_LEAST_ONE, eval_particles=AT_LEAST_ONE, match_particles=AT_LEAST_ONE, filter_weight=NON_NEGATIVE,
         smooth_weight=NON_NEGATIVE, match_weight=NON_NEGATIVE, partial=("zeros", "drop", "mask"),
         entry_drop=FRACTION)
class MDMMConfig(DMMConfig):
    particles: int = 25
    eval_particles: int = 200
    match_particles: int = 50
    filter_weight: float = 0.5
    smooth_weight: float = 0.5
    match_weight: float = 0.01
    subsets: list[list[str]] | None = None
    cross: bool = False
    future_grad: bool = False
    partial: str = "zeros"
    entry_drop: float = 0.0


class MDMM(DeepMarkovModel):
    name = "mdmm"
    Config = MDMMConfig
    queries = DeepMarkovModel.queries | {"filter", "smooth", "sample_latents"}

    def __init__(self, schema: Schema, config: MDMMConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        unknown = sorted({n for subset in c.subsets or [] for n in subset} - set(self.input_names))
        if unknown or any(not subset for subset in c.subsets or []):
            raise ConfigError(f"MDMM: each of subsets must name input modalities {self.input_names}, got {c.subsets}")
        masked = c.partial == "mask"
        images = [n for n in self.input_names if schema[n].net != "mlp"]
        if masked and images:
            raise ConfigError(f"MDMM: partial='mask' needs MLP encoders (it feeds them the entry mask beside the values); "
                              f"{images} use conv nets: choose partial='zeros' or 'drop'")
        self.encoders = ModalityDict({n: Encoder(schema[n], c.latent_dim, c.hidden, with_mask=masked) for n in self.input_names})
        self.transitions["bwd"] = GatedTransition(c.latent_dim, c.transition_hidden, c.transition_min_std,
                                                  c.transition_identity)

    def evidence(self, batch: Batch, subsets: Tensor) -> Experts:
        """``[S, B, T, D]``: the product of the observed modality experts of each input subset
        (``subsets`` ``[S, inputs]``), per step; the encoders run once over all steps."""
        mask = self.config.partial == "mask"
        experts = stack([self.encoders[n](batch.values[n], batch.observed[n] if mask else None)
                         for n in self.input_names])  # [M, B, T, D]
        present = torch.stack([self.informs(batch, n) for n in self.input_names])  # [M, B, T]
        return experts.masked(subsets[:, :, None, None] & present).prod(1)

    def informs(self, batch: Batch, name: str) -> Tensor:
        """``[B, T]``: the steps where modality ``name``'s expert counts: those with an observed
        entry, or with ``partial="drop"`` only those observed entirely (the reference's)."""
        if self.config.partial != "drop":
            return batch.present(name)
        observed = batch.observed[name]
        return observed.reshape(*observed.shape[:2], -1).all(-1)

    def training_inputs(self, batch: Batch) -> Batch:
        """The burst deletion of every deep Markov model, then with ``entry_drop`` single
        entries of the inputs deleted (:func:`~polymodal.missing.drop_entries`)."""
        batch = super().training_inputs(batch)
        if not self.training or self.config.entry_drop == 0:
            return batch
        return drop_entries(batch, self.config.entry_drop, self.input_names)

    def backward_filter(self, evidence: Experts, particles: int) -> tuple[Gaussian, Gaussian, Tensor]:
        """Algorithm 1 on ``evidence`` (from :meth:`evidence`).

        Returns the filtering posteriors q(z_t | x_{t:T}), the future terms q(z_t | x_{t+1:T})
        (each ``[S, B, T, D]``) and the first particle of every step ``[S, B, T, D]``; with one
        particle, that particle path is a sample of the filtering ELBO's chain.

        Where no evidence follows a step (x_{t+1:T} empty: padding, or steps to extrapolate),
        its future term is p(z), as at a sequence's own last step, so that trailing
        unobserved steps change nothing before them (the backward chain through them would
        be p(z) only if the model were exactly stationary)."""
        lead, steps = _rows(evidence)
        informed = evidence.precision.gt(0).any(-1)  # [S, B, T]: some expert at the step
        later = informed.flip(-1).cummax(-1).values.flip(-1).reshape(-1, len(steps))  # some expert at t..T
        bounded = not bool(later.all())  # one check for the whole recursion, not one per step
        prior = self.prior((later.shape[0],))
        backward = self.transitions["bwd"]
        prior_expert = self.prior(()).natural  # p(z) of p(z_{t-1} | z_t) = p(z) q~_bwd(z_{t-1} | z_t), made once
        future = prior
        posts, futures, samples = [], [], []
        for t in reversed(range(len(steps))):
            futures.append(future)
            post = (future * steps[t]).gaussian()
            posts.append(post)
            z = post.rsample((particles,) if particles > 1 else ())  # one particle: its draws, without the axis
            samples.append(z[0] if particles > 1 else z)
            if t > 0:
                if particles == 1:  # one particle's moment match is that particle's Gaussian itself
                    future = (prior_expert * backward(z)).gaussian()
                else:
                    moved = (prior_expert * backward(z.flatten(0, 1))).gaussian()
                    future = moment_match(Gaussian(moved.mean.view(z.shape), moved.var.view(z.shape)), dim=0)
                if bounded:
                    future = where(later[:, t], future, prior)
        return _steps(lead, posts[::-1]), _steps(lead, futures[::-1]), torch.stack(samples[::-1], 1).view(*lead, -1)

    def forward_smooth(self, evidence: Experts, futures: Gaussian, sample: bool = True):
        """Algorithm 2's forward pass: the conditional smoothing posteriors, the conditional
        priors p(z_t | z_{t-1}) and the path (samples, or means when ``sample`` is False)."""
        lead, steps = _rows(evidence * futures)
        forward = self.transitions["fwd"]
        posts, experts, path = [], [], []
        z = None
        for t in range(len(steps)):
            if z is None:  # p(z_1 | z_0) = p(z) cancels the divided-out p(z)
                post = steps[0].gaussian()
            else:
                expert = forward(z).natural
                experts.append(expert)
                post = (steps[t] * expert).gaussian()
            z = post.rsample() if sample else post.mean
            posts.append(post)
            path.append(z)
        prior = self.prior(lead[:-1])
        priors = prior.mean[..., None, :], prior.var[..., None, :]
        if experts:
            # The conditional priors p(z_t | z_{t-1}) = p(z) q~_fwd(z_t | z_{t-1}) of every step at once.
            precision = torch.stack([e.precision for e in experts], 1).view(*lead[:-1], -1, priors[0].shape[-1])
            shift = torch.stack([e.shift for e in experts], 1).view(precision.shape)
            rest = (self.prior(()).natural * Experts(precision, shift, POSITIVE)).gaussian()
            priors = torch.cat([priors[0], rest.mean], -2), torch.cat([priors[1], rest.var], -2)
        return _steps(lead, posts), Gaussian(*priors), torch.stack(path, 1).view(*lead, -1)

    def subsets(self, device) -> Tensor:
        """``[S, inputs]`` input subsets: all inputs, then the configured ``subsets`` (by
        default each input alone, the reference's unimodal copies)."""
        names = self.input_names
        extra = [[n] for n in names] if self.config.subsets is None and len(names) > 1 else self.config.subsets or []
        rows = [[True] * len(names)] + [[n in subset for n in names] for subset in extra]
        return torch.tensor(rows, dtype=torch.bool, device=device)

    def scored(self, subsets: Tensor) -> dict[str, Tensor]:
        """``[S, 1, 1]`` per modality: whether each input subset's terms score it: its own and
        every target-only modality (all observed ones with ``cross``)."""
        every = subsets.new_ones(len(subsets))
        return {n: (subsets[:, self.input_names.index(n)] if n in self.input_names and not self.config.cross else every)
                .view(-1, 1, 1) for n in self.schema.names}

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        c = self.config
        subsets = self.subsets(batch.device)
        evidence = self.evidence(self.training_inputs(batch), subsets)
        scored, weights = self.scored(subsets), self.rescaled(batch)

        def elbo(posts: Gaussian, priors: Gaussian, z: Tensor) -> Tensor:  # [S]
            recon = self.reconstruction(batch, self.decode(z), weights, within=scored)
            return recon.sum(1) - beta * kl_divergence(posts, priors).flatten(1).sum(1)

        posts, futures, z = self.backward_filter(evidence, 1)
        filtering = elbo(posts, futures, z)
        with torch.set_grad_enabled(c.future_grad):
            _, futures, _ = self.backward_filter(evidence, c.particles)
        smoothing = elbo(*self.forward_smooth(evidence, futures))
        n = self.sequence_steps(batch)
        stationarity = sum(
            kl_divergence(self.prior(()), moment_match(self.transition(self.prior((c.match_particles,)).rsample(), k), dim=0))
            for k in ("forward", "backward")
        )
        loss = -c.filter_weight * filtering.sum() - c.smooth_weight * smoothing.sum() + c.match_weight * beta * n * stationarity
        loss = loss / n
        terms = {"filtering": filtering[0].detach() / n, "smoothing": smoothing[0].detach() / n,
                 "stationarity": stationarity.detach()}
        return LossOutput(loss, terms)

    def _evidence(self, batch: Batch) -> Experts:
        return self.evidence(batch.to(self.device), torch.ones(1, len(self.input_names), dtype=torch.bool, device=self.device))

    @query
    def filter(self, batch: Batch) -> Gaussian:
        """Backward filtering posteriors q(z_t | x_{t:T}) given what is observed: ``[B, T, D]``."""
        self.check_arguments("filter", batch)
        return self.backward_filter(self._evidence(batch), self.config.eval_particles)[0][0]

    @query
    def smooth(self, batch: Batch, sample: bool = False) -> Gaussian:
        """Smoothing posteriors q(z_t | z_{t-1}, x_{1:T}) along the mean path (or a sampled
        path with ``sample``) given what is observed: ``[B, T, D]``."""
        self.check_arguments("smooth", batch)
        evidence = self._evidence(batch)
        futures = self.backward_filter(evidence, self.config.eval_particles)[1]
        return self.forward_smooth(evidence, futures, sample)[0][0]

    def encode(self, batch: Batch) -> Gaussian:
        return self.smooth(batch)

    @query
    def sample_latents(self, batch: Batch, n: int) -> Tensor:
        """``n`` latent trajectories sampled from the smoothing posterior: ``[n, B, T, D]``."""
        self.check_arguments("sample_latents", batch, n=n)
        return self.sampler(batch)(n)[0]

    def sampler(self, batch: Batch) -> Callable[[int], tuple[Tensor, Tensor]]:
        """Whole latent paths from the smoothing posterior, with their log-density
        sum_t log q(z_t | z_{t-1}, x_{t:T}); the backward pass runs once for all draws."""
        evidence = self._evidence(batch)
        futures = self.backward_filter(evidence, self.config.eval_particles)[1]

        def draw(k: int) -> tuple[Tensor, Tensor]:
            shape = (k, *evidence.shape[1:])
            posts, _, path = self.forward_smooth(evidence.expand(*shape), futures.expand(*shape))
            return path, posts.log_prob(path).sum(-1)

        return draw


def _rows(experts: Experts) -> tuple[torch.Size, tuple[Experts, ...]]:
    """Experts ``[*lead, T, D]`` -> ``lead + (T,)`` and one ``[prod(lead), D]`` per step: the
    recursions run on rows, so that the transition network's layers get matrices (no reshapes,
    which would each cost a node of the graph at every step)."""
    *lead, steps, d = experts.shape
    rows = Experts(experts.precision.reshape(-1, steps, d), experts.shift.reshape(-1, steps, d), experts.known)
    return torch.Size((*lead, steps)), rows.unbind(1)


def _steps(lead: torch.Size, per_step: list[Gaussian]) -> Gaussian:
    """Per-step Gaussians ``[rows, D]`` -> one ``[*lead, D]`` (the inverse of :func:`_rows`)."""
    stacked = stack(per_step, 1)
    return Gaussian(stacked.mean.view(*lead, -1), stacked.var.view(*lead, -1))
