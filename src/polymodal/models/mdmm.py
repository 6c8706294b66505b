r"""MDMM: multimodal deep Markov model, trained and queried with backward-forward variational
inference (BFVI; Tan Zhi-Xuan et al., AAAI 2020).

Generative model over steps t = 1..T with latents z_t and modalities x^m_t:

    p(z_1) = p(z),  p(z_t | z_{t-1}) \propto p(z) \tilde q_fwd(z_t | z_{t-1}),  p(x^m_t | z_t),

with a learnable global prior p(z) and gated transition networks read as quotient experts
(as in the reference code); a backward transition p(z_t | z_{t+1}) \propto p(z) \tilde q_bwd
is learned alongside.

Inference: each modality's encoder gives a quotient expert \tilde q(z_t | x^m_t) = q / p(z);
missing modalities (per step and sequence) contribute nothing, and an encoder sees zeros in
place of the unobserved features of a partly observed step.

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
N = B * T. All input subsets (all modalities, and each alone) run through one tensorised
recursion, not one pass each. During training each modality of each sequence loses one
burst of ``burst * T`` input steps (targets stay complete), as in the reference.

Deliberate differences from the reference code, and why:

* At t = T the smoothing posterior keeps the future expert p(z) that its quotient divides
  out (the code masks the expert but still divides, giving the wrong posterior).
* The categorical likelihood uses log-softmax (the code scores probabilities, not logs).
* The transition's std floor is ``transition_min_std`` (default 1e-3, the reference's); at
  that floor the transition's precision (up to 10^6) can outweigh every encoder's.
* Encoders and decoders are the library's default nets (SiLU MLPs, variance softplus + 1e-4).
* Every step of a padded sequence is a step: padding is unobserved, not cut.
* lambda_m defaults to 1, the ELBO itself, not the reference's "auto" 1 / (M * features of m)
  (0.5 each for the spirals' x and y): at 0.5 two of three spiral seeds failed once the KL
  warm-up ended (the forward transition collapsed to its std floor); at 1 both of them trained
  (benchmarks/RESULTS.md, sessions 5-6). Set ``weights`` to override.
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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, ConfigError, checked
from ..data import Batch
from ..gaussian import Gaussian, kl_divergence, moment_match, stack
from ..likelihoods import Observation
from ..missing import drop_burst
from ..modalities import Schema
from ..nets import Decoder, Encoder, GatedTransition
from .base import LossOutput, ModalityDict, Model


@dataclass
@checked(latent_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE, transition_hidden=AT_LEAST_ONE, transition_min_std=POSITIVE,
         weights=NON_NEGATIVE, burst=FRACTION)
class DMMConfig:
    latent_dim: int = 5
    hidden: tuple[int, ...] = (20,)
    transition_hidden: int = 20
    transition_min_std: float = 1e-3
    weights: dict[str, float] = field(default_factory=dict)
    burst: float = 0.1
    inputs: list[str] | None = None
    rescale: bool = True


class DeepMarkovModel(Model):
    """The generative model that BFVI and its RNN baselines share: a learnable global prior
    p(z), the forward transition p(z_t | z_{t-1}) = p(z) * q~_fwd(z_t | z_{t-1}) through a gated
    transition network, and one decoder per modality. Subclasses add the inference network,
    which reads the ``inputs`` modalities (default: all); the others, e.g. a label to be
    predicted, are targets only."""

    Config = DMMConfig

    def __init__(self, schema: Schema, config=None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        if c.transition_min_std <= 0:
            raise ConfigError(f"{type(self).__name__}: transition_min_std must be positive, got {c.transition_min_std}")
        static = [m.name for m in schema if not m.sequential]
        if static:
            raise ValueError(f"{type(self).__name__} models sequences; modalities {static} are not sequential")
        unknown = sorted(set(c.inputs or []) - set(schema.names))
        if unknown or c.inputs == []:
            raise ConfigError(f"{type(self).__name__}: inputs must name modalities of the schema {schema.names}, got {c.inputs}")
        self.input_names = [n for n in schema.names if c.inputs is None or n in c.inputs]
        d = c.latent_dim
        self.decoders = ModalityDict({m.name: Decoder(m, d, c.hidden) for m in schema})
        self.transitions = nn.ModuleDict({"fwd": GatedTransition(d, c.transition_hidden, c.transition_min_std)})
        self.prior_mean = nn.Parameter(torch.zeros(d))
        self.prior_log_std = nn.Parameter(torch.zeros(d))

    def prior(self, shape: tuple[int, ...]) -> Gaussian:
        """The learnable global prior p(z), broadcast to ``shape``."""
        d = self.config.latent_dim
        std = self.prior_log_std.exp() + 1e-3
        return Gaussian(self.prior_mean.expand(*shape, d), (std**2).expand(*shape, d))

    def transition(self, z: Tensor, direction: str = "forward") -> Gaussian:
        """p(z_t | z_{t-1}) (``"forward"``) or p(z_t | z_{t+1}) (``"backward"``): the global prior
        times the transition network's quotient expert."""
        prior_precision, prior_shift = self.prior(()).natural
        precision, shift = self.transitions[{"forward": "fwd", "backward": "bwd"}[direction]](z).natural
        return Gaussian.from_natural(prior_precision + precision, prior_shift + shift)

    def inputs(self, batch: Batch) -> Batch:
        """What the inference network sees in training: one burst of steps deleted per modality
        and sequence (the targets stay complete)."""
        return drop_burst(batch, self.config.burst) if self.training and self.config.burst > 0 else batch

    def decode(self, z: Tensor) -> dict[str, Observation]:
        return self.observations({name: decoder(z) for name, decoder in self.decoders.items()})

    def reconstruction(self, batch: Batch, z: Tensor, subsets: Tensor) -> Tensor:
        """``[S]``: sum over sequences and steps of the weighted log-likelihood of each subset's
        own modalities (``subsets`` ``[S, M]``), decoded from ``z`` ``[S, B, T, D]``. With
        ``rescale`` each modality's weight is divided by the fraction of its entries observed in
        the batch."""
        total = torch.zeros(len(subsets), device=z.device)
        for m, (name, obs) in enumerate(self.decode(z).items()):
            observed = batch.observed[name]
            event = (1,) * len(self.schema[name].shape)
            mask = observed & subsets[:, m].view(-1, 1, 1, *event)
            weight = self.weight(name)
            if self.config.rescale:
                weight = weight * observed.numel() / observed.sum().clamp(min=1)
            total = total + weight * obs.log_prob(batch.values[name], mask).flatten(1).sum(1)
        return total

    @staticmethod
    def steps(batch: Batch) -> int:
        """N = B * T, the number of (sequence, step) pairs the loss is averaged over."""
        return next(iter(batch.values.values())).shape[:2].numel()

    @torch.no_grad()
    def extrapolate(self, batch: Batch, forward: int = 0, backward: int = 0) -> Batch:
        """The batch with ``backward`` steps added before the first and ``forward`` after the
        last, every unobserved entry filled in (interpolated inside, extrapolated outside)."""
        def pad(x: Tensor) -> Tensor:
            shape = (x.shape[0], 1, *x.shape[2:])
            return torch.cat([x.new_zeros(shape).expand(-1, backward, *x.shape[2:]), x,
                              x.new_zeros(shape).expand(-1, forward, *x.shape[2:])], 1)

        padded = Batch(batch.schema, {k: pad(v) for k, v in batch.values.items()}, {k: pad(m) for k, m in batch.observed.items()})
        return self.impute(padded)

    @torch.no_grad()
    def generate(self, n: int, steps: int = 100, sample: bool = False) -> Batch:
        """``n`` sequences of ``steps`` from the generative model."""
        self.eval()
        z = [self.prior((n,)).sample()]
        for _ in range(steps - 1):
            z.append(self.transition(z[-1]).sample())
        decoded = self.decode(torch.stack(z, 1))
        values = {name: obs.sample() if sample else obs.point for name, obs in decoded.items()}
        return Batch(self.schema, values, {k: torch.ones(v.shape, dtype=torch.bool, device=v.device) for k, v in values.items()})

    def paths(self, batch: Batch, n: int) -> tuple[Tensor, Tensor]:
        """``n`` latent paths ``[n, B, T, D]`` drawn from the posterior given what is observed,
        and their log-density under it ``[n, B]``."""
        raise NotImplementedError

    def log_prior(self, path: Tensor) -> Tensor:
        """log p(z_1) + sum_t log p(z_t | z_{t-1}) of latent paths ``[..., T, D]``: ``[...]``."""
        first = self.prior(path.shape[:-2]).log_prob(path[..., 0, :])
        return first + self.transition(path[..., :-1, :]).log_prob(path[..., 1:, :]).sum(-1)

    def importance_draws(self, batch: Batch, samples: int, chunk: int) -> Iterator[tuple[Tensor, dict[str, Observation]]]:
        """Whole latent paths weighted by log p(x_o, z_{1:T}) - log q(z_{1:T} | x_o): the weight
        is per sequence, under the Markov prior."""
        for start in range(0, samples, chunk):
            z, log_q = self.paths(batch, min(chunk, samples - start))
            decoded = self.decode(z)
            log_w = self.log_prior(z) - log_q
            for name, obs in decoded.items():
                log_w = log_w + obs.log_prob(batch.values[name], batch.observed[name]).flatten(2).sum(2)
            yield log_w, decoded

    def log_likelihood(self, batch: Batch, n_samples: int = 1000, chunk: int = 100) -> Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} has no importance-sampled log-likelihood yet; use the ELBO terms of loss()"
        )


@dataclass
@checked(particles=AT_LEAST_ONE, eval_particles=AT_LEAST_ONE, match_particles=AT_LEAST_ONE, filter_weight=NON_NEGATIVE,
         smooth_weight=NON_NEGATIVE, match_weight=NON_NEGATIVE)
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


class MDMM(DeepMarkovModel):
    name = "mdmm"
    Config = MDMMConfig

    def __init__(self, schema: Schema, config: MDMMConfig | dict | None = None, **kwargs):
        super().__init__(schema, config, **kwargs)
        c = self.config
        unknown = sorted({n for subset in c.subsets or [] for n in subset} - set(self.input_names))
        if unknown or any(not subset for subset in c.subsets or []):
            raise ConfigError(f"MDMM: each of subsets must name input modalities {self.input_names}, got {c.subsets}")
        self.encoders = ModalityDict({n: Encoder(schema[n], c.latent_dim, c.hidden) for n in self.input_names})
        self.transitions["bwd"] = GatedTransition(c.latent_dim, c.transition_hidden, c.transition_min_std)

    def evidence(self, batch: Batch, subsets: Tensor) -> tuple[Tensor, Tensor]:
        """Natural parameters ``[S, B, T, D]`` of the product of the observed modality experts
        of each input subset (``subsets`` ``[S, inputs]``); the encoders run once over all steps."""
        precisions, shifts = [], []
        for name in self.input_names:
            x, observed = batch.values[name], batch.observed[name]
            precision, shift = self.encoders[name](torch.where(observed, x, torch.zeros_like(x))).natural
            present = batch.present(name).unsqueeze(-1)
            precisions.append(torch.where(present, precision, 0.0))
            shifts.append(torch.where(present, shift, 0.0))
        use = subsets.to(precisions[0].dtype)
        return tuple(torch.einsum("sm,mbtd->sbtd", use, torch.stack(x)) for x in (precisions, shifts))

    def backward_filter(self, evidence: tuple[Tensor, Tensor], particles: int) -> tuple[Gaussian, Gaussian, Tensor]:
        """Algorithm 1 on ``evidence`` (from :meth:`evidence`).

        Returns the filtering posteriors q(z_t | x_{t:T}), the future terms q(z_t | x_{t+1:T})
        (each ``[S, B, T, D]``) and the first particle of every step ``[S, B, T, D]``; with one
        particle, that particle path is a sample of the filtering ELBO's chain."""
        precision, shift = (x.unbind(2) for x in evidence)  # unbind: indexing per step would cost a full-size gradient each
        future = self.prior(precision[0].shape[:2])
        posts, futures, samples = [], [], []
        for t in reversed(range(len(precision))):
            futures.append(future)
            future_precision, future_shift = future.natural
            post = Gaussian.from_natural(future_precision + precision[t], future_shift + shift[t])
            posts.append(post)
            z = post.rsample((particles,))
            samples.append(z[0])
            if t > 0:
                future = moment_match(self.transition(z, "backward"), dim=0)
        return stack(posts[::-1], -2), stack(futures[::-1], -2), torch.stack(samples[::-1], -2)

    def forward_smooth(self, evidence: tuple[Tensor, Tensor], futures: Gaussian, sample: bool = True):
        """Algorithm 2's forward pass: the conditional smoothing posteriors, the conditional
        priors p(z_t | z_{t-1}) and the path (samples, or means when ``sample`` is False)."""
        future_precision, future_shift = futures.natural
        precision, shift = (evidence[0] + future_precision).unbind(2), (evidence[1] + future_shift).unbind(2)
        prior_precision, prior_shift = self.prior(()).natural
        posts, priors, path = [], [], []
        z = None
        for t in range(len(precision)):
            if z is None:  # p(z_1 | z_0) = p(z) cancels the divided-out p(z)
                conditional = self.prior(precision[0].shape[:2])
                post = Gaussian.from_natural(precision[0], shift[0])
            else:
                expert_precision, expert_shift = self.transitions["fwd"](z).natural
                conditional = Gaussian.from_natural(prior_precision + expert_precision, prior_shift + expert_shift)
                post = Gaussian.from_natural(precision[t] + expert_precision, shift[t] + expert_shift)
            z = post.rsample() if sample else post.mean
            posts.append(post)
            priors.append(conditional)
            path.append(z)
        return stack(posts, -2), stack(priors, -2), torch.stack(path, -2)

    def subsets(self, device) -> Tensor:
        """``[S, inputs]`` input subsets: all inputs, then the configured ``subsets`` (by
        default each input alone, the reference's unimodal copies)."""
        names = self.input_names
        extra = [[n] for n in names] if self.config.subsets is None and len(names) > 1 else self.config.subsets or []
        rows = [[True] * len(names)] + [[n in subset for n in names] for subset in extra]
        return torch.tensor(rows, dtype=torch.bool, device=device)

    def scored(self, subsets: Tensor) -> Tensor:
        """``[S, M]``: the modalities each input subset's terms score: its own and every
        target-only modality (all observed ones with ``cross``)."""
        if self.config.cross:
            return subsets.new_ones(len(subsets), len(self.schema))
        columns = [subsets[:, self.input_names.index(n)] if n in self.input_names else subsets.new_ones(len(subsets))
                   for n in self.schema.names]
        return torch.stack(columns, 1)

    def loss(self, batch: Batch, beta: float = 1.0) -> LossOutput:
        c = self.config
        subsets = self.subsets(batch.device)
        evidence = self.evidence(self.inputs(batch), subsets)
        posts, futures, z = self.backward_filter(evidence, 1)
        scored = self.scored(subsets)
        filtering = self.reconstruction(batch, z, scored) - beta * kl_divergence(posts, futures).flatten(1).sum(1)
        with torch.set_grad_enabled(c.future_grad):
            _, futures, _ = self.backward_filter(evidence, c.particles)
        posts, priors, z = self.forward_smooth(evidence, futures)
        smoothing = self.reconstruction(batch, z, scored) - beta * kl_divergence(posts, priors).flatten(1).sum(1)
        n = self.steps(batch)
        stationarity = sum(
            kl_divergence(self.prior(()), moment_match(self.transition(self.prior((c.match_particles,)).rsample(), k), dim=0))
            for k in ("forward", "backward")
        )
        loss = -c.filter_weight * filtering.sum() - c.smooth_weight * smoothing.sum() + c.match_weight * beta * n * stationarity
        loss = loss / n
        terms = {"filtering": filtering[0].detach() / n, "smoothing": smoothing[0].detach() / n,
                 "stationarity": stationarity.detach()}
        return LossOutput(loss, terms)

    def _evidence(self, batch: Batch) -> tuple[Tensor, Tensor]:
        return self.evidence(batch.to(self.device), torch.ones(1, len(self.input_names), dtype=torch.bool, device=self.device))

    @torch.no_grad()
    def filter(self, batch: Batch) -> Gaussian:
        """Backward filtering posteriors q(z_t | x_{t:T}) given what is observed: ``[B, T, D]``."""
        self.eval()
        return self.backward_filter(self._evidence(batch), self.config.eval_particles)[0][0]

    @torch.no_grad()
    def smooth(self, batch: Batch, sample: bool = False) -> Gaussian:
        """Smoothing posteriors q(z_t | z_{t-1}, x_{1:T}) along the mean path (or a sampled
        path with ``sample``) given what is observed: ``[B, T, D]``."""
        self.eval()
        evidence = self._evidence(batch)
        futures = self.backward_filter(evidence, self.config.eval_particles)[1]
        return self.forward_smooth(evidence, futures, sample)[0][0]

    def encode(self, batch: Batch) -> Gaussian:
        return self.smooth(batch)

    @torch.no_grad()
    def sample_latents(self, batch: Batch, n: int) -> Tensor:
        """``n`` latent trajectories sampled from the smoothing posterior: ``[n, B, T, D]``."""
        self.eval()
        return self.paths(batch, n)[0]

    def paths(self, batch: Batch, n: int) -> tuple[Tensor, Tensor]:
        evidence = self._evidence(batch)
        futures = self.backward_filter(evidence, self.config.eval_particles)[1]
        many = tuple(e.expand(n, *e.shape[1:]) for e in evidence)
        posts, _, path = self.forward_smooth(many, Gaussian(futures.mean.expand_as(many[0]), futures.var.expand_as(many[0])))
        return path, posts.log_prob(path).sum(-1)
