"""The model contract and the task API every model shares, written once.

A model declares on its class what it is: ``data`` (``"static"`` modalities, ``"sequences"``,
or ``"any"``), ``has_density`` (whether it defines p(x) to importance-sample), ``queries`` (the
task methods it answers) and ``loss_weights`` (the weights its loss takes, which the trainer may
schedule). :class:`Model` checks them once: the data kind when a model is built, the queries when
one is asked, the density before any importance sampling; nothing else asks a model what it is.

A model implements ``loss(batch, *, beta=1.0, **weights)``, ``encode`` (the posterior given
whatever each sample has) and ``decode`` (likelihoods of every modality given latents);
``prior`` is a distribution (a :class:`~polymodal.gaussian.Gaussian` or
:class:`~polymodal.gaussian.Mixture`). ``embed``, ``impute``, ``predict``, ``generate``,
``log_likelihood`` and ``draw_imputations`` are built on those here, as are the pieces every
objective shares: the weighted reconstruction term (:meth:`Model.reconstruction`) and the
importance draws (:meth:`Model.importance`, whose proposal a model changes by overriding
:meth:`Model.proposal` or :meth:`Model.sampler` and whose joint density by
:meth:`Model.log_prior` or :meth:`Model.log_joint`). :class:`PerModality` is the shared block of
the models with one encoder and one decoder per modality, :class:`LatentConfig` their options.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, WEIGHTS, ConfigError, Weights, checked, make_config
from ..data import Batch, DataError
from ..files import write_folder
from ..gaussian import Gaussian, Mixture, log_mean_exp, stack
from ..likelihoods import Observation
from ..modalities import Schema
from ..nets import Decoder, Encoder

MODELS: dict[str, type[Model]] = {}
ABSENT = object()  # an argument that check_arguments was not given
F = TypeVar("F", bound=Callable[..., Any])
DATA = ("static", "sequences", "any")
# The task queries of the contract; those that need a density importance-sample the model.
QUERIES = frozenset({"embed", "reconstruct", "impute", "predict", "generate", "log_likelihood", "draw_imputations"})
DENSITY_QUERIES = frozenset({"log_likelihood", "draw_imputations"})
STACKED = 1024  # the most entries of a modality whose reconstruction is stacked with its alikes' (see reconstruction)


class NeverObservedWarning(UserWarning):
    """A model was fitted on data that never observes a modality it models (or, for MEME, never
    a pair): it learns nothing of it, and ``predict`` of it raises."""


def query(method: F) -> F:
    """A query of a trained model: refused unless the model's ``queries`` declare it; runs
    without gradients in eval mode, and gives the model back in the mode it was in."""

    @functools.wraps(method)
    def run(self: Model, *args: Any, **kwargs: Any) -> Any:
        if method.__name__ in QUERIES and method.__name__ not in self.queries:
            why = (" it defines no density: no likelihood estimate, no importance sampling (use samples=0)"
                   if method.__name__ in DENSITY_QUERIES and not self.has_density else "")
            raise NotImplementedError(f"{type(self).__name__} does not answer {method.__name__};{why} "
                                      f"it answers {sorted(self.queries)}")
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return method(self, *args, **kwargs)
        finally:
            self.train(training)

    return run  # type: ignore[return-value]


@dataclass
class LossOutput:
    """The scalar to minimise and its named terms (detached, for logging)."""

    loss: Tensor
    terms: dict[str, Tensor]


@dataclass
class Seen:
    """What a model's training data observed: per modality, the number of samples with an
    observed entry, and the number of samples observing every modality."""

    counts: dict[str, int]
    complete: int

    @classmethod
    def of(cls, data: Batch) -> Seen:
        present = torch.stack([data.present(name).reshape(len(data), -1).any(1) for name in data.schema.names])
        return cls(dict(zip(data.schema.names, present.sum(1).tolist())), int(present.all(0).sum()))


class Model(nn.Module):
    """Base of the models. Subclasses set ``name`` and ``Config`` and are registered; they
    declare their capabilities (see the module docstring) where they differ from the defaults."""

    name: ClassVar[str]
    Config: ClassVar[type]
    data: ClassVar[str] = "static"
    has_density: ClassVar[bool] = True
    queries: ClassVar[frozenset[str]] = QUERIES
    loss_weights: ClassVar[frozenset[str]] = frozenset({"beta"})

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.data not in DATA:
            raise TypeError(f"{cls.__name__}.data must be one of {DATA}, got {cls.data!r}")
        unknown = sorted(name for name in cls.queries if not callable(getattr(cls, name, None)))
        if unknown or (not cls.has_density and cls.queries & DENSITY_QUERIES):
            raise TypeError(f"{cls.__name__}.queries must name its methods, and with no density none of "
                            f"{sorted(DENSITY_QUERIES)}; got {sorted(cls.queries)}")
        if "name" in cls.__dict__:
            MODELS[cls.name] = cls

    def __init__(self, schema: Schema, config: Any = None, **kwargs: Any):
        super().__init__()
        if not isinstance(schema, Schema):
            raise TypeError(f"{type(self).__name__}: expected a Schema of modalities, got {type(schema).__name__}")
        if config is not None and kwargs:
            raise ConfigError(f"{type(self).__name__}: pass either a config or keyword options, not both")
        if config is None:
            config = make_config(self.Config, kwargs)
        elif isinstance(config, dict):
            config = make_config(self.Config, config)
        self.schema = schema
        self.config = config
        self.seen: Seen | None = None  # set by observe(); None: not recorded, nothing refused
        given = getattr(config, "weights", {})
        unknown = sorted(set(given) - set(schema.names)) if isinstance(given, Mapping) else []
        if unknown:
            raise ConfigError(f"{type(self).__name__}: weights name unknown modalities {unknown}; the schema has {schema.names}")
        wrong = [m.name for m in schema if self.data != "any" and m.sequential != (self.data == "sequences")]
        if wrong:
            kind = "not sequential" if self.data == "sequences" else "sequential (MDMM and DKS model sequences)"
            raise ValueError(f"{type(self).__name__} models {self.data.removesuffix('s')} modalities; {wrong} are {kind}")

    def save(self, folder: str | Path) -> Path:
        """Write config JSON (with what the training data observed) and safetensors weights to
        ``folder``; ``polymodal.load`` reads it."""
        config = {"model": self.name, "schema": self.schema.config(), "config": dataclasses.asdict(self.config),
                  "seen": None if self.seen is None else dataclasses.asdict(self.seen)}
        return write_folder(folder, config, self.state_dict())

    def observe(self, data: Batch) -> None:
        """Remember what the training ``data`` observes (saved with the model; the trainer calls
        this before fitting), and warn of each modality the model will learn nothing of."""
        self.seen = Seen.of(data)
        for name, why in self.unseen().items():
            warnings.warn(f"{type(self).__name__}: {why}; it learns nothing of {name!r}, and predict({name!r}) will "
                          "refuse", NeverObservedWarning, stacklevel=3)

    def unseen(self) -> dict[str, str]:
        """The modalities the training data taught nothing of, each with why (none when
        :meth:`observe` was not called)."""
        if self.seen is None:
            return {}
        return {name: f"no training sample observes {name!r}" for name, n in self.seen.counts.items() if n == 0}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def lambdas(self) -> dict[str, float]:
        """The likelihood weight lambda of every modality: the config's ``weights`` (else 1), or
        with ``weights="auto"`` those of :func:`auto_weights`."""
        given = getattr(self.config, "weights", {})
        if given == "auto":
            return auto_weights(self.schema)
        return {name: float(given.get(name, 1.0)) for name in self.schema.names}

    @property
    def latent_size(self) -> int:
        """Dimension of the whole latent vector."""
        return self.config.latent_dim

    def prior(self, shape: tuple[int, ...]) -> Gaussian | Mixture:
        """p(z) for a batch of ``shape``: a distribution of latents ``[*shape, latent_size]``."""
        return Gaussian.standard((*shape, self.latent_size), device=self.device)

    def default_schedules(self) -> dict[str, Any]:
        """Loss-weight schedules the method calls for, as ``{weight: Schedule options}``; the
        trainer's config overrides them."""
        return {}

    def loss(self, batch: Batch, *, beta: float = 1.0, **weights: float) -> LossOutput:
        """The training objective and its named terms. ``beta`` (the KL weight) and the other
        ``weights`` are the plain numbers the trainer's schedules give; a model uses those in
        its ``loss_weights`` and ignores the others."""
        raise NotImplementedError

    def encode(self, batch: Batch) -> Gaussian:
        raise NotImplementedError

    def decode(self, z: Tensor) -> dict[str, Observation]:
        raise NotImplementedError

    def observations(self, params: dict[str, Tensor]) -> dict[str, Observation]:
        """The likelihood of each modality given its decoder outputs, by modality name (every
        modality of the schema, or those a model decodes)."""
        return {name: self.schema[name].likelihood(p, len(self.schema[name].shape)) for name, p in params.items()}

    def reconstruction(
        self,
        batch: Batch,
        decoded: Mapping[str, Observation],
        weights: Mapping[str, float] | None = None,
        within: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """sum_m lambda_m log p(x_m | z) over the observed entries of the decoded modalities:
        the reconstruction term of every loss and importance weight.

        Returns one value per sample (sequential modalities summed over their steps), with the
        decoded likelihoods' leading axes (e.g. latent samples or subsets) in front.
        ``weights`` are the lambda_m (default :attr:`lambdas`; importance weights pass 1s).
        ``within[m]``, of the per-sample shape, narrows which samples score modality m (the
        entries scored are those observed *and* within).
        """
        weights = self.lambdas if weights is None else weights
        alike: dict[tuple, list[str]] = {}
        for name, obs in decoded.items():
            # Small modalities alike (a table's columns) are scored as one: a few large operations, not many small
            # ones. Large ones (images) are scored each alone: stacking them would copy every decoder output.
            key = (obs.family, obs.event_ndim, self.schema[name].sequential, weights[name], tuple(obs.params.shape),
                   tuple(batch.values[name].shape)) if self.schema[name].size <= STACKED else (name,)
            alike.setdefault(key, []).append(name)
        total = None
        for names in alike.values():
            family, event = decoded[names[0]].family, decoded[names[0]].event_ndim
            sequential, weight = self.schema[names[0]].sequential, weights[names[0]]
            masks = []
            for name in names:
                mask = batch.observed[name]
                if within is not None and name in within:
                    mask = mask & within[name].view(*within[name].shape, *(1,) * event)
                masks.append(mask)
            if len(names) == 1:
                obs, x, mask = decoded[names[0]], batch.values[names[0]], masks[0]
            else:
                obs = Observation(family, torch.stack([decoded[n].params for n in names], -(event + 2)), event + 1)
                x, mask = torch.stack([batch.values[n] for n in names], -(event + 1)), torch.stack(masks, -(event + 1))
            term = obs.log_prob(x, mask)
            if sequential:
                term = term.sum(-1)
            total = weight * term if total is None else total + weight * term
        return total

    @property
    def unit_weights(self) -> dict[str, float]:
        """lambda_m = 1 for every modality: the likelihood itself, for importance weights."""
        return dict.fromkeys(self.schema.names, 1.0)

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) of latents ``[..., D]``: ``[...]``."""
        return self.prior(tuple(z.shape[:-1])).log_prob(z)

    def log_joint(self, batch: Batch, z: Tensor, decoded: Mapping[str, Observation]) -> Tensor:
        """log p(x_o, z) per sample, for latents ``z`` with leading sample axes and their
        decoded likelihoods."""
        return self.log_prior(z) + self.reconstruction(batch, decoded, self.unit_weights)

    def log_weights(self, batch: Batch, z: Tensor, log_q: Tensor) -> tuple[Tensor, dict[str, Observation]]:
        """Importance log-weights log p(x_o, z) - log q(z | x_o) of latents ``z`` ``[K, B, ...]``
        with proposal log-densities ``log_q`` ``[K, B]``, and the decoded likelihoods."""
        decoded = self.decode(z)
        return self.log_joint(batch, z, decoded) - log_q, decoded

    def proposal(self, batch: Batch) -> Gaussian | Mixture:
        """The importance proposal q(z | x_o) given ``batch``: by default the posterior of
        :meth:`encode`; mixture posteriors give the mixture itself."""
        return self.encode(batch)

    def sampler(self, batch: Batch) -> Callable[[int], tuple[Tensor, Tensor]]:
        """The proposal computed once: a function drawing ``k`` latents ``[k, B, ...]`` and their
        log-densities ``[k, B]``. By default from :meth:`proposal`; sequence models draw whole
        latent paths."""
        q = self.proposal(batch)

        def draw(k: int) -> tuple[Tensor, Tensor]:
            z = q.sample((k,))
            return z, q.log_prob(z)

        return draw

    def importance_draws(self, batch: Batch, samples: int, chunk: int) -> Iterator[tuple[Tensor, dict[str, Observation]]]:
        """``samples`` proposal draws, ``chunk`` at a time for the whole batch, as their
        log-weights ``[k, B]`` and decoded likelihoods (read them through :meth:`importance`)."""
        if not self.has_density:
            raise NotImplementedError(f"{type(self).__name__} defines no density: no likelihood estimate, no importance "
                                      "sampling (use samples=0)")
        draw = self.sampler(batch)
        for start in range(0, samples, chunk):
            yield self.log_weights(batch, *draw(min(chunk, samples - start)))

    def importance(self, batch: Batch, samples: int, chunk: int = 100, decoded: bool = True) -> Draws:
        """The one importance-sampling path: ``samples`` proposal draws for the whole batch,
        ``chunk`` at a time, as their log-weights ``[K, B]`` and (with ``decoded``) the decoded
        likelihoods of all of them (parameters ``[K, B, ...]``)."""
        log_w, observations = [], []
        for lw, obs in self.importance_draws(batch, samples, chunk):
            log_w.append(lw)
            observations.append(obs if decoded else {})
        first = observations[0]
        joined = {name: Observation(o.family, torch.cat([d[name].params for d in observations]), o.event_ndim)
                  for name, o in first.items()}
        return Draws(torch.cat(log_w), joined)

    @query
    def embed(self, batch: Batch) -> Tensor:
        """Posterior mean of the latent given what each sample has."""
        self.check_arguments("embed", batch)
        return self.encode(batch.to(self.device)).mean

    @query
    def reconstruct(self, batch: Batch) -> dict[str, Observation]:
        """Likelihoods of every modality decoded from the posterior mean."""
        return self.decode(self.embed(batch))

    @query
    def impute(self, batch: Batch, samples: int = 0, chunk: int = 100) -> Batch:
        """A copy of ``batch`` whose unobserved entries are filled in; observed entries are
        returned unchanged and every mask becomes True.

        With ``samples = 0`` the fill is decoded from the posterior mean. With ``samples = K``
        it is the self-normalised importance-sampling estimate of E[x_u | x_o] under the
        model, sum_k w_k E[x_u | z_k] with w_k proportional to p(x_o, z_k) / q(z_k | x_o)
        (the most probable class under the weighted probabilities, for categorical).
        """
        self.check_arguments("impute", batch, samples=samples, chunk=chunk)
        if samples and not self.has_density:
            raise ValueError(f"{type(self).__name__}.impute: the model defines no density to importance-sample, so "
                             f"samples must be 0, got {samples!r}")
        batch = batch.to(self.device)
        if len(batch) == 0:  # nothing to fill, and the networks cannot take zero rows
            return Batch(batch.schema, batch.values, {k: torch.ones_like(m) for k, m in batch.observed.items()})
        if samples:
            draws = self.importance(batch, samples, chunk)
            w = draws.weights  # [K, B]
            fill = {}
            for mod in self.schema:
                mean = draws.decoded[mod.name].mean
                estimate = (w.view(*w.shape, *[1] * (mean.dim() - 2)) * mean).sum(0)
                fill[mod.name] = estimate.argmax(-1) if mod.categorical else estimate
        else:
            fill = {name: obs.point for name, obs in self.reconstruct(batch).items()}
        values = {name: torch.where(batch.observed[name], x, fill[name].to(x.dtype)) for name, x in batch.values.items()}
        return Batch(batch.schema, values, {k: torch.ones_like(m) for k, m in batch.observed.items()})

    @query
    def predict(
        self, batch: Batch, target: str, inputs: list[str] | None = None, proba: bool = False, **options: Any
    ) -> Tensor:
        """Predict modality ``target`` from the ``inputs`` modalities (default: all others).

        Returns the imputation value (class indices for categorical), or with ``proba`` the
        likelihood's mean (class probabilities for categorical). ``options`` go to the
        model's :meth:`reconstruct` (such as MFM's ``surrogate``).
        """
        self.check_arguments("predict", batch, target=target, inputs=inputs)
        inputs = [n for n in self.schema.names if n != target] if inputs is None else inputs
        if target in inputs:
            raise ValueError(f"predict: target {target!r} cannot also be an input")
        why = self.unseen().get(target)
        if why:
            raise ValueError(f"{type(self).__name__}.predict: the model cannot predict {target!r}: {why} in its "
                             "training data")
        hidden = [n for n in self.schema.names if n not in inputs]
        observation = self.reconstruct(batch.without(*hidden), **options)[target]
        return observation.mean if proba else observation.point

    @query
    def generate(self, n: int, sample: bool = False) -> Batch:
        """``n`` joint samples from the prior: likelihood means (or samples) of every modality."""
        self.check_arguments("generate", n=n)
        return self.drawn(self.decode(self.prior((n,)).sample()), sample)

    def drawn(self, decoded: Mapping[str, Observation], sample: bool = False) -> Batch:
        """A fully observed batch of decoded likelihoods' points (or samples, with ``sample``)."""
        values = {name: obs.sample() if sample else obs.point for name, obs in decoded.items()}
        return Batch(self.schema, values, {k: torch.ones(v.shape, dtype=torch.bool, device=v.device) for k, v in values.items()})

    @query
    def log_likelihood(self, batch: Batch, n_samples: int = 1000, chunk: int = 100) -> Tensor:
        """Importance-sampled log p(observed entries) per sample:

        log p(x_o) ~= log mean_s p(x_o, z_s) / q(z_s | x_o),  z_s ~ q (the :meth:`sampler`),

        drawn ``chunk`` at a time for the whole batch at once.
        """
        self.check_arguments("log_likelihood", batch, n_samples=n_samples, chunk=chunk)
        batch = batch.to(self.device)
        return log_mean_exp(self.importance(batch, n_samples, chunk, decoded=False).log_w, 0)

    @query
    def draw_imputations(self, batch: Batch, draws: int, samples: int = 100, chunk: int = 100) -> list[Batch]:
        """``draws`` multiple imputations of ``batch`` by sampling importance resampling: per
        sample and draw, a latent is picked among ``samples`` proposal draws with probability
        proportional to its importance weight, and the unobserved entries are sampled from the
        likelihood given it. Observed entries are kept."""
        self.check_arguments("draw_imputations", batch, draws=draws, samples=samples, chunk=chunk)
        batch = batch.to(self.device)
        found = self.importance(batch, samples, chunk)
        pick = torch.multinomial(found.weights.T, draws, replacement=True).T  # [draws, B]
        drawn = {}
        for name, obs in found.decoded.items():
            index = pick.view(*pick.shape, *[1] * (obs.params.dim() - 2)).expand(draws, *obs.params.shape[1:])
            chosen = Observation(obs.family, obs.params.gather(0, index), obs.event_ndim).sample()
            drawn[name] = torch.where(batch.observed[name], batch.values[name], chosen.to(batch.values[name].dtype))
        ones = {k: torch.ones_like(m) for k, m in batch.observed.items()}
        return [Batch(batch.schema, {name: d[k] for name, d in drawn.items()}, ones) for k in range(draws)]

    def check_arguments(
        self, task: str, batch: Any = ABSENT, target: Any = ABSENT, inputs: Any = None, **counts: Any
    ) -> None:
        """Refuse bad arguments of a task method before any tensor math: a ``batch`` that is not
        a :class:`Batch` of this model's schema, an unknown ``target`` or ``inputs`` name (``None``
        inputs: all others), a count (``n``, ``samples``, ...) that is not an integer of at
        least its minimum in ``COUNTS``. Arguments left out are not checked."""
        where = f"{type(self).__name__}.{task}"
        if batch is not ABSENT:
            if not isinstance(batch, Batch):
                raise TypeError(
                    f"{where}: expected a Batch (Batch.from_data or TableSchema.transform builds one), got {type(batch).__name__}"
                )
            if batch.schema is not self.schema and batch.schema.config() != self.schema.config():
                raise DataError(f"{where}: the batch is of another schema: {schema_difference(batch.schema, self.schema)}")
        if target is not ABSENT and (not isinstance(target, str) or target not in self.schema):
            raise DataError(f"{where}: unknown target modality {target!r}; the schema has {self.schema.names}")
        if inputs is not None:
            if isinstance(inputs, str) or not all(isinstance(name, str) for name in inputs):
                raise DataError(f"{where}: inputs must be a list of modality names, got {inputs!r}")
            unknown = [name for name in inputs if name not in self.schema]
            if unknown:
                raise DataError(f"{where}: unknown input modalities {unknown}; the schema has {self.schema.names}")
        for name, value in counts.items():
            least = COUNTS[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"{where}: {name} must be an integer >= {least}, got {value!r}")

    @query
    def reconstruction_terms(self, batch: Batch) -> dict[str, float]:
        """Each modality's weighted log-likelihood of ``batch``'s observed entries under the
        decoded posterior mean, summed over the batch. The trainer calls it only after a
        non-finite loss, to name the modality whose term became non-finite; so the training
        loop pays nothing for it."""
        return {name: float(self.reconstruction(batch, {name: obs}).sum()) for name, obs in self.reconstruct(batch).items()}


# The least value of each count argument of the task methods.
COUNTS = {"n": 1, "samples": 0, "n_samples": 1, "chunk": 1, "steps": 1, "forward": 0, "backward": 0, "draws": 1}


@dataclass
class Draws:
    """Importance draws for a batch: log-weights ``[K, B]`` and the decoded likelihoods of
    every draw (parameters ``[K, B, ...]``)."""

    log_w: Tensor
    decoded: dict[str, Observation]

    @property
    def weights(self) -> Tensor:
        """The self-normalised importance weights ``[K, B]``."""
        return self.log_w.softmax(0)


@dataclass
@checked(latent_dim=AT_LEAST_ONE, hidden=AT_LEAST_ONE, channels=AT_LEAST_ONE, weights=WEIGHTS)
class LatentConfig:
    """The options of the models with per-modality encoders and decoders on one latent:
    ``latent_dim``, the nets' ``hidden`` widths (MLPs) and ``channels`` (conv nets of images),
    and the likelihood ``weights`` lambda_m by modality name (default 1), or ``"auto"``
    (:func:`auto_weights`). A model's config subclasses it and adds its own options."""

    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    channels: tuple[int, ...] = (32, 64)
    weights: Weights = field(default_factory=dict)


class PerModality(Model):
    """The shared block of the models with one encoder q(z | x_m) and one decoder p(x_m | z)
    per modality, on one latent of ``latent_dim`` (the library's default nets of each
    modality). A subclass adds what its method needs after ``super().__init__``."""

    Config = LatentConfig

    def __init__(self, schema: Schema, config: Any = None, **kwargs: Any):
        super().__init__(schema, config, **kwargs)
        c, d = self.config, self.code_dim
        self.encoders = ModalityDict({m.name: Encoder(m, d, c.hidden, c.channels, self.max_var) for m in schema})
        self.decoders = ModalityDict({m.name: Decoder(m, d, c.hidden, c.channels) for m in schema})

    @property
    def code_dim(self) -> int:
        """The width of an encoder's Gaussian and of a decoder's input: ``latent_dim``, unless a
        modality's code holds more than the shared latent (MMVAE+'s private one)."""
        return self.config.latent_dim

    @property
    def max_var(self) -> float | None:
        """The largest variance an encoder may give (None: unbounded)."""
        return None

    def experts(self, batch: Batch) -> Gaussian:
        """``[M, B, D]``: each modality's encoder on its values, each run once."""
        return stack([self.encoders[name](batch.values[name]) for name in self.schema.names])

    def product(self, experts: Gaussian, present: Tensor) -> Gaussian:
        """``[B, D]``: the product of the ``present`` ``[M, B]`` experts without a prior expert;
        the prior for a sample with none."""
        prior = self.prior((experts.shape[1],))
        return (experts.masked(present).prod(0) * prior.masked(~present.any(0))).gaussian()

    def observation(self, name: str, z: Tensor) -> Observation:
        """p(x_m | z) of modality ``name`` at latents ``z`` ``[..., D]``."""
        mod = self.schema[name]
        return mod.likelihood(self.decoders[name](z), len(mod.shape))

    def decode(self, z: Tensor) -> dict[str, Observation]:
        return {name: self.observation(name, z) for name in self.schema.names}


def auto_weights(schema: Schema) -> dict[str, float]:
    """lambda_m = sqrt(max_k D_k / D_m), with D_m the entries of one sample of modality m (of
    one step, for a sequence; 1 for a class label). A log-likelihood summed over D independent
    entries spreads over samples as sqrt(D), so each modality's weighted log-likelihood then
    spreads as much as the largest one's, which keeps weight 1 (its ELBO and its balance
    against the KL are unchanged). Matching the sums themselves (max_k D_k / D_m) overweighs
    a small modality: an image's pixels are far from independent. A class label beside a
    28 x 28 image gets 28, beside an 8 x 8 one 8; modalities of one size (a table's columns)
    all get 1."""
    largest = max(mod.size for mod in schema)
    return {mod.name: math.sqrt(largest / mod.size) for mod in schema}


def schema_difference(given: Schema, expected: Schema) -> str:
    """What differs between two schemas, for an error message."""
    if given.names != expected.names:
        return f"its modalities are {given.names}, the model's are {expected.names}"
    for a, b in zip(given, expected):
        if a.config() != b.config():
            return f"modality {a.name!r} is {a.config()} in the batch and {b.config()} in the model"
    return "they differ"


def _escape(name: str) -> str:
    key = name.replace("%", "%25").replace(".", "%2E")
    return f"%{key}" if key in RESERVED else key


def _unescape(key: str) -> str:
    if key.startswith("%") and key[1:3] not in ("25", "2E"):
        key = key[1:]
    return key.replace("%2E", ".").replace("%25", "%")


class ModalityDict(nn.ModuleDict):
    """A ModuleDict keyed by modality name. torch refuses a module name with a "." (common in
    table columns, such as R's "Sepal.Length") or one that is an attribute of the dict
    ("values", "training"), so such names are stored escaped ("." as "%2E", "%" as "%25", an
    attribute name behind a "%"); other names are stored as they are, so saved weights keep
    their keys."""

    def __getitem__(self, name: str) -> nn.Module:
        return super().__getitem__(_escape(name))

    def __setitem__(self, name: str, module: nn.Module) -> None:
        super().__setitem__(_escape(name), module)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(_escape(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(_escape(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        return [_unescape(key) for key in super().keys()]

    def items(self) -> list[tuple[str, nn.Module]]:
        return [(_unescape(key), module) for key, module in super().items()]


RESERVED = frozenset(dir(nn.ModuleDict()))
