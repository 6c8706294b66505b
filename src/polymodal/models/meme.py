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

Pseudo-samples are initialised from real data: by :meth:`MEME.init_pseudo_samples`, or else
from the first batch ``loss`` sees (as the reference code does; under DDP call
``init_pseudo_samples(train)`` before fitting, so that every process starts alike). A
categorical modality (t = a label, Joy et al.'s semi-supervised VAE) has its classes as
fixed pseudo-samples, so the prior is the exact marginal sum_t p(z | t) p(t) under a
uniform p(t).

The task API: ``encode`` with one modality present is that modality's posterior; with both,
the normalised product q(z|s) q(z|t) of the two unimodal posteriors (MEME has no joint
posterior and no Gaussian prior to divide by); with neither, the Gaussian moment-matched
to the model's prior. The prior of ``generate`` and ``log_likelihood`` is the equal mixture
of the two pseudo-sample mixtures, 1/2 [1/N sum_i p(z | u^s_i) + 1/N sum_i p(z | u^t_i)],
with p(x|z) = p(s|z) p(t|z).

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
  the paper's Table 2.

Other differences: encoder variances are floored at 1e-4 (``softplus + 1e-4``, the library's
one Gaussian head; the code clamps the std at 1e-3 or 1e-4); the networks are the library's
MLP and conv nets, not the code's, and decoders output the Laplace location directly (the
code passes it through a sigmoid); a smaller last batch still sees all N pseudo-samples.
Only two modalities: MEME's mutual supervision is defined for a pair, and a third raises
:class:`~polymodal.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, NON_NEGATIVE, ConfigError, checked
from ..data import Batch, DataError
from ..gaussian import Gaussian, Mixture, log_mean_exp
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
        if len(schema) != 2:
            raise ConfigError(f"MEME is defined for exactly two modalities (s, t); the schema has {len(schema)}: {schema.names}")
        super().__init__(schema, config, **kwargs)
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

    def prior(self, shape: tuple[int, ...]) -> Mixture:
        """1/2 [1/N sum_i p(z | u^s_i) + 1/N sum_i p(z | u^t_i)]: the equal mixture of both
        pseudo-sample mixtures, for a batch of ``shape``."""
        parts = [self.conditional_prior(name) for name in self.schema.names]
        weights = torch.cat([torch.full(p.shape[:1], 0.5 / p.shape[0], device=self.device) for p in parts])
        return Mixture(Gaussian(torch.cat([p.mean for p in parts]), torch.cat([p.var for p in parts])), weights).expand(*shape)

    def encode(self, batch: Batch) -> Gaussian:
        present = batch.presence()
        prior = self.prior(()).matched().expand(len(batch), self.latent_size)
        return (self.experts(batch).masked(present).prod(0) * prior.masked(~present.any(0))).gaussian()

    def unseen(self) -> dict[str, str]:
        """As :meth:`Model.unseen`, and both modalities when no training sample is a pair:
        mutual supervision, the only cross-modal term, then never ran."""
        if self.seen is None or self.seen.complete or not all(self.seen.counts.values()):
            return super().unseen()
        return dict.fromkeys(self.schema.names, "no training sample observes both modalities (no pairs)")

    def matched(self, batch: Batch, s: str, t: str, q_s: Gaussian, q_t: Gaussian, z: Tensor, log_ps: Tensor,
                samples: int | None = None, classifier_weight: float | None = None) -> Tensor:
        """L_{s->t} per sample of a paired ``batch``, given z ~ q(z|s) and log p(s|z); K and
        the weight c are the config's unless given."""
        c = self.config
        samples = c.samples if samples is None else samples
        zs = torch.cat([z.unsqueeze(0), q_s.rsample((samples,))])  # the ELBO's own sample first
        log_classifier = self.reconstruction(batch, {t: self.observation(t, zs)}, self.unit_weights)
        log_ratio = q_s.kl(q_t) if c.analytic_kl else q_s.log_prob(z) - q_t.log_prob(z)
        weight = c.classifier_weight if classifier_weight is None else classifier_weight
        return mutual_supervision(log_ps, log_classifier, log_ratio, weight)[0]

    @query
    def bound(self, batch: Batch, source: str, samples: int = 100) -> Tensor:
        """``[B]`` L_{s->t} of each pair with s = ``source``, the paper's Table 2 "marginal
        likelihood": K = ``samples`` draws for log q(t|s) and weight 1 on it whatever the
        training weight, in either direction whatever the model was trained in (the other
        direction "flips" the networks' roles)."""
        self.check_arguments("bound", batch, target=source, samples=samples)
        for name in self.schema.names:
            lacking = int((~batch.present(name)).sum())
            if lacking:
                raise DataError(f"MEME.bound scores pairs: {lacking} of {len(batch)} samples lack {name!r}")
        batch = batch.to(self.device)
        s, t = source, next(name for name in self.schema.names if name != source)
        q = {name: self.encoders[name](batch.values[name]) for name in (s, t)}
        z = q[s].rsample()
        log_ps = self.reconstruction(batch, {s: self.observation(s, z)})
        return self.matched(batch, s, t, q[s], q[t], z, log_ps, samples, 1.0)

    def unpaired(self, s: str, t: str, q_s: Gaussian, z: Tensor, log_ps: Tensor) -> Tensor:
        """L(s) per sample: the ELBO of s under the prior of t's pseudo-samples."""
        return log_ps - q_s.log_prob(z) + Mixture(self.conditional_prior(t)).log_prob(z)

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        if not bool(self.pseudo_ready.all()):
            self.init_pseudo_samples(batch)
        s, t = self.schema.names
        q = {name: self.encoders[name](batch.values[name]) for name in (s, t)}
        z = {name: q[name].rsample() for name in (s, t)}
        log_p = {name: self.reconstruction(batch, {name: self.observation(name, z[name])}) for name in (s, t)}
        has_s, has_t = batch.present(s), batch.present(t)
        rows = (has_s & has_t).nonzero().squeeze(1)  # the pairs; their K + 1 classifier decodes are the costly part
        paired = self.paired(batch.select(rows), {k: g[rows] for k, g in q.items()}, {k: v[rows] for k, v in z.items()},
                             {k: v[rows] for k, v in log_p.items()})
        only_s = torch.where(has_s & ~has_t, self.unpaired(s, t, q[s], z[s], log_p[s]), 0.0)
        only_t = torch.where(has_t & ~has_s, self.unpaired(t, s, q[t], z[t], log_p[t]), 0.0)
        n = len(batch)
        terms = {"paired": paired.sum() / n, f"{s}_only": only_s.sum() / n, f"{t}_only": only_t.sum() / n}
        return LossOutput(-sum(terms.values()), {k: v.detach() for k, v in terms.items()})

    def paired(self, pairs: Batch, q: dict[str, Gaussian], z: dict[str, Tensor], log_p: dict[str, Tensor]) -> Tensor:
        """L_Bi per sample of a batch of pairs (or the configured single direction)."""
        s, t = self.schema.names
        directions = {"both": [(s, t), (t, s)], "s_to_t": [(s, t)], "t_to_s": [(t, s)]}[self.config.direction]
        total = sum(self.matched(pairs, a, b, q[a], q[b], z[a], log_p[a]) for a, b in directions)
        return total / 2 if self.config.combine == "mean" and len(directions) == 2 else total
