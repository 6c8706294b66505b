r"""MEME: mutual supervision for multimodal VAEs (Joy, Shi, Torr, Rainforth & Siddharth, ICLR 2022).

Two modalities s and t (the schema's first and second) and four networks, no joint encoder:
Enc_s, Dec_s, Enc_t, Dec_t. In the direction s -> t, Enc_s is the posterior q(z | s), Dec_s
the likelihood p(s | z), Enc_t the *conditional prior* p(z | t) and Dec_t the "classifier"
q(t | z); in the direction t -> s the roles swap. Each encoder is both a posterior and a
prior, each decoder both a likelihood and a classifier.

Objective for a pair, direction s -> t (paper Eq. 1), with z ~ q(z | s):

    L_{s->t}(s, t) = E_{q(z|s)}[ sg(w) log( p(s|z) p(z|t) / (q(z|s) q(t|z)) ) ] + log q(t|s)
    w(z)    = q(t|z) / q(t|s)                                      (sg: stop-gradient, App. B)
    q(t|s) ~= 1/(K+1) sum_{k=0..K} q(t | z_k)                       (App. D)

where z_0 is the expectation's own sample and z_1..z_K fresh reparameterised ones, so that
w <= K + 1. log p(t) is a constant and left out. Both directions (Eq. 2):
L_Bi = 1/2 [L_{s->t}(s, t) + L_{t->s}(t, s)].

Partially observed data (Eq. 4): a sample with s alone scores

    L(s) = E_{q(z|s)}[ log p(s|z) - log q(z|s) + log 1/N sum_i p(z | u^t_i) ],

the prior being Enc_t applied to N learnable pseudo-samples u^t_i in t's data space
(symmetrically for t alone). The loss is -[sum_{pairs} L_Bi + sum_{s only} L(s) +
sum_{t only} L(t)] / batch size (Eq. 5): each row of a batch goes to its own term, so mixed
batches need nothing special. Rows with neither modality contribute nothing. The
likelihood weights lambda multiply log p(s|z) and log p(t|z) as likelihoods, never as
classifiers (w must be a ratio of densities). Images use whatever the Modality's likelihood
says; the paper's (and ``load_digit_styles``') is a Laplace of fixed scale.

More than two modalities (Appendix E, Eq. 11): the implicit regularisation of one modality
by the others, with an explicit product combining those others. For a sample whose observed
modalities are O (|O| >= 2), each s in O is scored against the rest T = O \ {s}:

    L_{s->T} = E_{q(z|s)}[ sg(w) log( p(s|z) p(z|T) / (q(z|s) q(T|z)) ) ] + c log q(T|s)
    p(z|T)  proportional to prod_{t in T} p(z|t)      (the product of T's encoders, normalised)
    q(T|z)  = prod_{t in T} q(t|z)                    (T's decoders as one classifier)
    w, q(T|s) as above with q(T|z) for q(t|z),

and the sample scores 1/|O| sum_{s in O} L_{s->T} (Eq. 11; the sum with ``combine="sum"``).
The modalities outside O play no part, as a missing t plays none in a pair's L_Bi. A sample
with one modality s scores L(s) under the equal mixture of the other modalities'
pseudo-sample mixtures, 1/(M-1) sum_{u != s} 1/N sum_i p(z | u_i). With M = 2 all of this
is the two-modality objective above, term for term. Every observed/unobserved pattern of a
batch is scored by its own term, as for two. Appendix E leaves the combination open (a
product or a mixture); the product keeps p(z|T) Gaussian, so ``analytic_kl`` still applies,
and it narrows as more of the others are observed.

Pseudo-samples are initialised from real data: by :meth:`MEME.init_pseudo_samples`, or else
from the first batch ``loss`` sees (as the reference code does; under DDP call
``init_pseudo_samples(train)`` before fitting, so that every process starts alike). A
categorical modality (t = a label, Joy et al.'s semi-supervised VAE) has its classes as
fixed pseudo-samples, so the prior is the exact marginal sum_t p(z | t) p(t) under a
uniform p(t).

The task API: ``encode`` with one modality present is that modality's posterior; with more,
the normalised product of their unimodal posteriors (MEME has no joint posterior and no
Gaussian prior to divide by); with none, the Gaussian moment-matched to the model's prior.
The prior of ``generate`` and ``log_likelihood`` is the equal mixture of every modality's
pseudo-sample mixture, 1/M sum_m 1/N sum_i p(z | u^m_i) (for two, 1/2 [1/N sum_i p(z | u^s_i)
+ 1/N sum_i p(z | u^t_i)]), with p(x|z) = prod_m p(x_m|z).

Choices where paper and reference code differ (METHODS.md section 4.6), the paper's by default:

* ``classifier_weight``: the weight c of log q(t|s); paper 1, code 10. With c = 1 the two
  classifier terms cancel in expected gradient (E[w grad log q(t|z)] = grad log q(t|s)), so
  pairs teach cross-generation only through w and the conditional prior; c = 10 leaves
  9 grad log q(t|s), a direct one. In our 30-epoch runs on the digit styles only c = 10
  (with the code's other two choices) moved the prints' latents off chance.
* ``combine``: ``"mean"`` of the two directions (paper) or their ``"sum"`` (code).
* ``analytic_kl``: inside the w-weighted term, the single-sample log q(z|s) - log p(z|t)
  (paper, False) or the analytic KL(q(z|s) || p(z|t)) (code, True; not the same estimator,
  since w depends on z).
* ``pseudo_samples``: N; the code uses the batch size, 128.
* ``direction``: ``"both"`` (Eq. 2), or one direction only (``"s_to_t"``, ``"t_to_s"``) as in
  the paper's Table 2; with two modalities only.

Other differences: encoder variances are floored at 1e-4 (``softplus + 1e-4``, the library's
one Gaussian head; the code clamps the std at 1e-3 or 1e-4); the networks are the library's
MLP and conv nets, not the code's, and decoders output the Laplace location directly (the
code passes it through a sigmoid); a smaller last batch still sees all N pseudo-samples.
With more than two modalities the training data's record (:attr:`Model.seen`) does not say
which patterns it observed, so fitting warns of no pairs only for two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, NON_NEGATIVE, ConfigError, checked
from ..data import Batch, DataError
from ..gaussian import Gaussian, Mixture, log_mean_exp, stack
from ..modalities import Schema
from .base import QUERIES, LatentConfig, LossOutput, PerModality, query

COMBINE = ("mean", "sum")
DIRECTIONS = ("both", "s_to_t", "t_to_s")


@dataclass
@checked(samples=AT_LEAST_ONE, classifier_weight=NON_NEGATIVE, pseudo_samples=AT_LEAST_ONE)
class MEMEConfig(LatentConfig):
    samples: int = 10
    classifier_weight: float = 1.0
    combine: str = "mean"
    analytic_kl: bool = False
    pseudo_samples: int = 128
    direction: str = "both"

    def __post_init__(self):
        if self.combine not in COMBINE or self.direction not in DIRECTIONS:
            raise ConfigError(f"MEMEConfig: combine must be one of {COMBINE} and direction one of {DIRECTIONS}, "
                              f"got {self.combine!r} and {self.direction!r}")
        if self.samples < 1 or self.pseudo_samples < 1 or self.classifier_weight < 0:
            raise ConfigError(f"MEMEConfig: samples and pseudo_samples must be positive and classifier_weight >= 0, got {self}")


def mutual_supervision(
    log_px: Tensor, log_classifier: Tensor, log_ratio: Tensor, classifier_weight: float
) -> tuple[Tensor, Tensor]:
    """One direction's objective per sample, and its weight w.

    ``log_px`` is log p(s|z), ``log_ratio`` log q(z|s) - log p(z|t) (or its analytic KL) and
    ``log_classifier`` ``[K + 1, B]`` log q(t | z_k) with the expectation's own sample z_0
    first: sg(w) (log p(s|z) - log_ratio - log q(t|z_0)) + c log q(t|s)."""
    log_qts = log_mean_exp(log_classifier, 0)
    w = (log_classifier[0] - log_qts).exp().detach()
    return w * (log_px - log_ratio - log_classifier[0]) + classifier_weight * log_qts, w


class MEME(PerModality):
    name = "meme"
    Config = MEMEConfig
    queries = QUERIES | {"bound"}
    loss_weights = frozenset()

    def __init__(self, schema: Schema, config: MEMEConfig | dict | None = None, **kwargs):
        if len(schema) < 2:
            raise ConfigError(f"MEME needs at least two modalities; the schema has {len(schema)}: {schema.names}")
        super().__init__(schema, config, **kwargs)
        if len(schema) > 2 and self.config.direction != "both":
            raise ConfigError(f"MEME: direction {self.config.direction!r} names one of two modalities; with "
                              f"{len(schema)} it must be 'both'")
        self.pseudo = nn.ParameterDict()
        for mod in schema:
            if mod.categorical:
                self.register_buffer(f"classes_{mod.name}", torch.arange(mod.num_classes), persistent=False)
            else:
                self.pseudo[mod.name] = nn.Parameter(torch.rand(self.config.pseudo_samples, *mod.shape))
        self.register_buffer("pseudo_ready", torch.tensor([mod.categorical for mod in schema]))

    def pseudo_inputs(self, name: str) -> Tensor:
        """The pseudo-samples u of modality ``name`` in its data space."""
        return getattr(self, f"classes_{name}") if self.schema[name].categorical else self.pseudo[name]

    def conditional_prior(self, name: str) -> Gaussian:
        """``[N, D]``: the mixture components p(z | u_i), the encoder of ``name`` on its pseudo-samples."""
        return self.encoders[name](self.pseudo_inputs(name))

    @torch.no_grad()
    def init_pseudo_samples(self, data: Batch) -> None:
        """Set each modality's pseudo-samples to its first N present samples in ``data``
        (repeated when fewer are present); modalities ``data`` does not have stay as they are."""
        for i, mod in enumerate(self.schema):
            rows = data.present(mod.name).nonzero().squeeze(1)
            if mod.categorical or not len(rows):
                continue
            rows = rows[torch.arange(self.config.pseudo_samples, device=rows.device) % len(rows)]
            self.pseudo[mod.name].copy_(data.values[mod.name][rows].to(self.pseudo[mod.name]))
            self.pseudo_ready[i] = True

    def pseudo_prior(self, names: list[str]) -> Mixture:
        """1/|U| sum_{u in U} 1/N sum_i p(z | u_i): the equal mixture of the pseudo-sample
        mixtures of the modalities U = ``names`` (for one, its own mixture)."""
        parts = [self.conditional_prior(name) for name in names]
        if len(parts) == 1:
            return Mixture(parts[0])
        weights = torch.cat([torch.full(p.shape[:1], 1 / (len(parts) * p.shape[0]), device=self.device) for p in parts])
        return Mixture(Gaussian(torch.cat([p.mean for p in parts]), torch.cat([p.var for p in parts])), weights)

    def prior(self, shape: tuple[int, ...]) -> Mixture:
        """1/M sum_m 1/N sum_i p(z | u^m_i): the equal mixture of every modality's pseudo-sample
        mixture, for a batch of ``shape``."""
        return self.pseudo_prior(self.schema.names).expand(*shape)

    def encode(self, batch: Batch) -> Gaussian:
        present = batch.presence()
        prior = self.prior(()).matched().expand(len(batch), self.latent_size)
        return (self.experts(batch).masked(present).prod(0) * prior.masked(~present.any(0))).gaussian()

    def unseen(self) -> dict[str, str]:
        """As :meth:`Model.unseen`, and for two modalities both when no training sample is a
        pair: mutual supervision, the only cross-modal term, then never ran."""
        if self.seen is None or len(self.schema) > 2 or self.seen.complete or not all(self.seen.counts.values()):
            return super().unseen()
        return dict.fromkeys(self.schema.names, "no training sample observes both modalities (no pairs)")

    def matched(self, batch: Batch, s: str, rest: list[str], q_s: Gaussian, q_rest: Gaussian, z: Tensor, log_ps: Tensor,
                samples: int | None = None, classifier_weight: float | None = None) -> Tensor:
        """L_{s->T} per sample of a ``batch`` observing s and T = ``rest``, given z ~ q(z|s),
        the conditional prior p(z|T) ``q_rest`` and log p(s|z); K and the weight c are the
        config's unless given."""
        c = self.config
        samples = c.samples if samples is None else samples
        zs = torch.cat([z.unsqueeze(0), q_s.rsample((samples,))])  # the ELBO's own sample first
        log_classifier = self.reconstruction(batch, {t: self.observation(t, zs) for t in rest}, self.unit_weights)
        log_ratio = q_s.kl(q_rest) if c.analytic_kl else q_s.log_prob(z) - q_rest.log_prob(z)
        weight = c.classifier_weight if classifier_weight is None else classifier_weight
        return mutual_supervision(log_ps, log_classifier, log_ratio, weight)[0]

    @staticmethod
    def conditional(q: dict[str, Gaussian], rest: list[str]) -> Gaussian:
        """p(z|T) for T = ``rest``: the normalised product of their encoders' Gaussians (for
        one, its own)."""
        return q[rest[0]] if len(rest) == 1 else stack([q[t] for t in rest]).prod(0).gaussian()

    @query
    def bound(self, batch: Batch, source: str, samples: int = 100) -> Tensor:
        """``[B]`` L_{s->T} of each complete sample with s = ``source`` and T the other
        modalities, the paper's Table 2 "marginal likelihood": K = ``samples`` draws for
        log q(T|s) and weight 1 on it whatever the training weight, in either direction
        whatever the model was trained in (the other direction "flips" the networks' roles)."""
        self.check_arguments("bound", batch, target=source, samples=samples)
        for name in self.schema.names:
            lacking = int((~batch.present(name)).sum())
            if lacking:
                raise DataError(f"MEME.bound scores complete samples: {lacking} of {len(batch)} samples lack {name!r}")
        batch = batch.to(self.device)
        rest = [name for name in self.schema.names if name != source]
        q = {name: self.encoders[name](batch.values[name]) for name in (source, *rest)}
        z = q[source].rsample()
        log_ps = self.reconstruction(batch, {source: self.observation(source, z)})
        return self.matched(batch, source, rest, q[source], self.conditional(q, rest), z, log_ps, samples, 1.0)

    def unpaired(self, s: str, q_s: Gaussian, z: Tensor, log_ps: Tensor) -> Tensor:
        """L(s) per sample: the ELBO of s under the prior of the other modalities' pseudo-samples."""
        return log_ps - q_s.log_prob(z) + self.pseudo_prior([name for name in self.schema.names if name != s]).log_prob(z)

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        if not bool(self.pseudo_ready.all()):
            self.init_pseudo_samples(batch)
        names = self.schema.names
        q = {name: self.encoders[name](batch.values[name]) for name in names}
        z = {name: q[name].rsample() for name in names}
        log_p = {name: self.reconstruction(batch, {name: self.observation(name, z[name])}) for name in names}
        present = batch.presence()  # [M, B]
        counts = present.sum(0)
        paired = log_p[names[0]].new_zeros(())
        # Each pattern of two or more observed modalities, in a fixed order; their K + 1 classifier decodes are the costly part.
        for pattern in present[:, counts >= 2].T.unique(dim=0).flip(0):
            rows = (present.T == pattern).all(1).nonzero().squeeze(1)
            observed = [name for name, seen in zip(names, pattern.tolist()) if seen]
            paired = paired + self.paired(batch.select(rows), observed, {k: q[k][rows] for k in observed},
                                          {k: z[k][rows] for k in observed}, {k: log_p[k][rows] for k in observed}).sum()
        n = len(batch)
        terms = {"paired": paired / n}
        for i, name in enumerate(names):
            only = torch.where(present[i] & (counts == 1), self.unpaired(name, q[name], z[name], log_p[name]), 0.0)
            terms[f"{name}_only"] = only.sum() / n
        return LossOutput(-sum(terms.values()), {k: v.detach() for k, v in terms.items()})

    def paired(self, batch: Batch, observed: list[str], q: dict[str, Gaussian], z: dict[str, Tensor],
               log_p: dict[str, Tensor]) -> Tensor:
        """Per sample of a ``batch`` observing the modalities ``observed`` (two or more), the
        mean (or sum) over s of L_{s->T}, T the others observed: L_Bi for a pair, or the
        configured single direction."""
        if self.config.direction == "both":
            directions = [(s, [t for t in observed if t != s]) for s in observed]
        else:
            s, t = observed if self.config.direction == "s_to_t" else observed[::-1]
            directions = [(s, [t])]
        total = sum(self.matched(batch, s, rest, q[s], self.conditional(q, rest), z[s], log_p[s]) for s, rest in directions)
        return total / len(directions) if self.config.combine == "mean" else total
