"""The candidates an :class:`~polymodal.Imputer` fits and blends: one small protocol, one class per kind.

Every candidate answers the same five calls, so the Imputer never asks which kind it holds:

* ``fit(train, score)`` learns from the batch ``train`` (the held-out cells hidden);
  ``score(candidate)``, when given, scores the candidate's fill of the held-out cells (lower
  is better) for early stopping or for choosing among its settings; ``history`` records it;
* ``fill(batch, samples, seed)`` returns ``batch`` with every unobserved cell filled;
* ``sample(batch, draws, samples, seed)`` returns ``draws`` multiple imputations of ``batch``;
* ``save(folder)`` writes one folder of the saved-model format (``config.json`` and
  ``model.safetensors``, :mod:`polymodal.persistence`), and ``load(folder, device)`` reads it.

The kinds: :class:`ModelCandidate`, a polymodal model trained by the :class:`~polymodal.Trainer`
for a step budget that does not grow with the table; :class:`GaussianCandidate`, the
:class:`~polymodal.GaussianMixture` fitted by EM on a subsample of the rows; and
:class:`IterativeCandidate`, scikit-learn's ``IterativeImputer`` (with BayesianRidge, or with
extra trees as a MissForest-like), which fills numeric columns only and cannot be saved
(scikit-learn's estimators only pickle, and polymodal writes no pickles).
"""

from __future__ import annotations

import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from .config import ConfigError
from .data import Batch, concat
from .evaluation import draw_imputations
from .files import ModelFileError, write_folder
from .mixture import GaussianMixture
from .models import MODELS
from .persistence import load, read_folder
from .training import Trainer, resolve_device, seed_stream

# The options of a model when model_options is None: MIWAE's bound with 10 samples instead of
# 20 halves the time per step at the same held-out NRMSE (measured on breast cancer at 50% MCAR).
MODEL_DEFAULTS = {"miwae": {"samples": 10}}
# The most optimisation steps of a model, whatever the size of the table: early stopping on the
# held-out cells usually ends training well before (about 300 steps on scikit-learn's breast cancer).
STEPS = 1500
# Optimisation steps between two validations (one epoch of the Trainer).
STEPS_PER_VALIDATION = 20
# With batch_size=None, tables of up to this many rows train in one full batch, larger ones in batches of it.
FULL_BATCH = 256
# Rows filled by one call of a model: each block draws from its own seeded stream, so a fill
# does not depend on how the rows were split into chunks (of a multiple of BLOCK).
BLOCK = 256
# The Gaussian mixtures tried, as (components, ridge); the held-out cells choose one, and
# without them the first is fitted.
GAUSSIAN_GRID = ((1, 0.01), (1, 0.001), (1, 0.1), (3, 0.1))
# EM runs on a seeded subsample of at most this many rows (all rows of a smaller table).
EM_ROWS = 20_000
# The grid's mixtures are compared on a seeded subsample of at most this many rows, and only
# the chosen one is refitted on EM_ROWS: on AER's STAR (10^4 rows, 21 numeric columns, 40%
# missing), with all four fitted on every row, the three-component mixture, which the held-out
# cells did not choose, took 82% of the mixture's time (benchmarks/results/imputer_scale/real.json,
# its notes).
GRID_ROWS = 2000
GAUSSIAN_KIND = "gaussian-mixture"


def cells(batch: Batch) -> np.ndarray:
    """The batch as one array ``[rows, cells]`` in modality order, NaN where unobserved."""
    arrays = batch.numpy(nan=True)
    return np.concatenate([arrays[m.name].reshape(len(batch), -1) for m in batch.schema], 1)


def from_cells(values: np.ndarray, like: Batch) -> Batch:
    """An array of :func:`cells`'s layout as a batch like ``like``; categorical codes are
    rounded into range, observed entries kept."""
    out, start = {}, 0
    for m in like.schema:
        width = int(np.prod(m.shape, dtype=int))
        block = torch.as_tensor(values[:, start : start + width].reshape(len(like), *m.shape), dtype=torch.float32)
        if m.categorical:
            block = block.round().clamp(0, m.num_classes - 1).long()
        out[m.name] = torch.where(like.observed[m.name], like.values[m.name], block.to(like.values[m.name].dtype))
        start += width
    return Batch(like.schema, out, {k: torch.ones_like(v) for k, v in like.observed.items()})


Score = Callable[["Candidate"], float]


class Candidate(ABC):
    """The protocol; see the module's docstring. ``kind`` names the class in a saved imputer;
    ``cellwise`` candidates model every cell as a number in one array, so they do not compete
    on categorical columns."""

    kind: ClassVar[str]
    cellwise: ClassVar[bool] = False
    name: str
    history: pd.DataFrame

    @abstractmethod
    def fit(self, train: Batch, score: Score | None) -> Candidate: ...

    @abstractmethod
    def fill(self, batch: Batch, samples: int, seed: int) -> Batch: ...

    @abstractmethod
    def sample(self, batch: Batch, draws: int, samples: int, seed: int) -> list[Batch]: ...

    @abstractmethod
    def save(self, folder: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, device: str) -> Candidate: ...


class ModelCandidate(Candidate):
    """A polymodal model of static data (``name`` in ``MODELS``) with ``options`` (``None``:
    ``MODEL_DEFAULTS``), trained by Adam for at most ``steps`` steps (``None``: ``STEPS``) on
    batches of ``batch_size`` rows drawn from the whole table, validated every
    ``STEPS_PER_VALIDATION`` steps; ``patience`` validations without improvement stop it."""

    kind = "model"

    def __init__(self, name: str, options: Mapping[str, Any] | None = None, steps: int | None = None,
                 batch_size: int | None = None, lr: float = 1e-2, patience: int | None = 5, seed: int = 0,
                 device: str = "cpu", threads: int = 1, progress: bool = False):
        self.name, self.options, self.steps, self.batch_size, self.lr = name, options, steps, batch_size, lr
        self.patience, self.seed, self.device, self.threads, self.progress = patience, seed, device, threads, progress

    def fit(self, train: Batch, score: Score | None) -> ModelCandidate:
        options = MODEL_DEFAULTS.get(self.name, {}) if self.options is None else self.options
        self.model = MODELS[self.name](train.schema, **dict(options))
        steps = self.steps or STEPS
        per_epoch = min(steps, STEPS_PER_VALIDATION)
        trainer = Trainer(self.model, epochs=math.ceil(steps / per_epoch), epoch_steps=per_epoch, lr=self.lr,
                          batch_size=self.batch_size or min(len(train), FULL_BATCH), seed=self.seed,
                          patience=self.patience if score is not None else None, device=self.device,
                          threads=self.threads, progress=self.progress)
        self.history = pd.DataFrame(trainer.fit(train, score=None if score is None else lambda _: score(self)))
        return self

    def fill(self, batch: Batch, samples: int, seed: int) -> Batch:
        """The importance-sampled E[x_u | x_o] with ``samples`` draws (the posterior mean's decoding with 0),
        ``BLOCK`` rows at a time, block ``b`` from the random stream seeded with ``seed + b * BLOCK``."""
        parts = []
        for start in range(0, len(batch), BLOCK):
            seed_stream(seed + start, self.model.device)
            parts.append(self.model.impute(batch.select(slice(start, start + BLOCK)), samples=samples).to("cpu"))
        return concat(parts)

    def sample(self, batch: Batch, draws: int, samples: int, seed: int) -> list[Batch]:
        parts = [draw_imputations(self.model, batch.select(slice(start, start + BLOCK)), draws, samples, seed + start)
                 for start in range(0, len(batch), BLOCK)]
        return [concat([p[k] for p in parts]) for k in range(draws)]

    def save(self, folder: Path) -> None:
        self.model.save(folder)

    @classmethod
    def load(cls, folder: Path, device: str) -> ModelCandidate:
        model = load(folder, device)
        candidate = cls(model.name, device=device)
        candidate.model = model
        return candidate


class GaussianCandidate(Candidate):
    """The Gaussian mixture of ``GAUSSIAN_GRID`` with the best held-out score (the first
    without held-out cells), fitted by EM to the cells of a seeded subsample of at most
    ``EM_ROWS`` rows. The grid's mixtures are compared on a seeded subsample of at most
    ``GRID_ROWS`` of those rows; on a larger table the chosen one is then refitted on all of
    them, EM starting from its subsample fit. ``history`` lists each fit's rows, held-out
    score, EM steps and seconds (the refit last)."""

    kind = "gaussian"
    cellwise = True
    name = "gaussian"

    def __init__(self, seed: int = 0, device: str = "cpu"):
        self.seed, self.device = seed, device

    def fit(self, train: Batch, score: Score | None) -> GaussianCandidate:
        device = resolve_device(self.device)
        x = cells(self._subsample(train, EM_ROWS))
        grid = GAUSSIAN_GRID if score is not None else GAUSSIAN_GRID[:1]
        if len(grid) == 1:
            began = time.perf_counter()
            self.mixture = GaussianMixture(*grid[0], seed=self.seed, device=device).fit(x)
            self.history = pd.DataFrame([self._row(len(x), math.nan, time.perf_counter() - began)])
            return self
        few = cells(self._subsample(train, GRID_ROWS))
        tried, results = [], []
        for components, ridge in grid:
            if components > 1 and components * 10 > len(few):
                continue  # a component needs rows to estimate its covariance from
            start = tried[0] if tried and components == grid[0][0] else None  # warm: fewer EM steps
            began = time.perf_counter()
            self.mixture = GaussianMixture(components, ridge, seed=self.seed, device=device).fit(few, start)
            tried.append(self.mixture)
            results.append(self._row(len(few), score(self), time.perf_counter() - began))
        best = int(np.nanargmin([r["valid_score"] for r in results]))
        if len(x) > len(few):  # the chosen one on every row EM sees, from where the subsample left it
            began = time.perf_counter()
            chosen = tried[best]
            self.mixture = GaussianMixture(chosen.components, chosen.ridge, seed=self.seed, device=device).fit(x, chosen)
            results.append(self._row(len(x), score(self), time.perf_counter() - began))
        else:
            self.mixture = tried[best]
        self.history = pd.DataFrame(results)
        return self

    def _subsample(self, train: Batch, most: int) -> Batch:
        """A seeded subsample of at most ``most`` rows of ``train`` (all of a smaller one), in table order."""
        if len(train) <= most:
            return train
        chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))[:most]
        return train.select(chosen.sort().values)

    def _row(self, rows: int, score: float, seconds: float) -> dict[str, Any]:
        return {"components": self.mixture.components, "ridge": self.mixture.ridge, "rows": rows, "valid_score": score,
                "iterations": len(self.mixture.log_likelihoods_), "seconds": seconds}

    def fill(self, batch: Batch, samples: int, seed: int) -> Batch:
        """The conditional mean E[x_u | x_o] (closed form: ``samples`` and ``seed`` play no part)."""
        return from_cells(self.mixture.transform(cells(batch)), batch)

    def sample(self, batch: Batch, draws: int, samples: int, seed: int) -> list[Batch]:
        return [from_cells(c, batch) for c in self.mixture.sample(cells(batch), draws, seed)]

    def save(self, folder: Path) -> None:
        config = {"components": self.mixture.components, "ridge": self.mixture.ridge}
        write_folder(folder, {"model": GAUSSIAN_KIND, "config": config}, self.mixture.state())

    @classmethod
    def load(cls, folder: Path, device: str) -> GaussianCandidate:
        saved, state = read_folder(folder)
        if saved.get("model") != GAUSSIAN_KIND:
            raise ModelFileError(f"{folder} holds a {saved.get('model')!r}, not a {GAUSSIAN_KIND}")
        try:
            mixture = GaussianMixture.from_state(state, resolve_device(device), ridge=float(saved["config"]["ridge"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{folder} is corrupt: {error!r}") from None
        candidate = cls(device=device)
        candidate.mixture = mixture
        return candidate


class IterativeCandidate(Candidate):
    """scikit-learn's ``IterativeImputer`` (``max_iter=10``) with its BayesianRidge
    (``"iterative"``) or with 50 extra trees per column (``"missforest"``), on the cells."""

    kind = "iterative"
    cellwise = True
    NAMES = ("iterative", "missforest")

    def __init__(self, name: str, seed: int = 0):
        self.name, self.seed = name, seed

    def fit(self, train: Batch, score: Score | None) -> IterativeCandidate:
        from sklearn.ensemble import ExtraTreesRegressor
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        trees = ExtraTreesRegressor(n_estimators=50, random_state=self.seed, n_jobs=1) if self.name == "missforest" else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings: max_iter=10 is a budget
            self.estimator = IterativeImputer(trees, max_iter=10, random_state=self.seed).fit(cells(train))
        self.history = pd.DataFrame({"valid_score": [score(self)] if score is not None else []})
        return self

    def fill(self, batch: Batch, samples: int, seed: int) -> Batch:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return from_cells(self.estimator.transform(cells(batch)), batch)

    def sample(self, batch: Batch, draws: int, samples: int, seed: int) -> list[Batch]:
        raise ConfigError(f"the {self.name} candidate fills with point estimates; it draws no imputations")

    def save(self, folder: Path) -> None:
        raise ConfigError(f"scikit-learn's {self.name} imputer only pickles, and polymodal writes no pickles; save an "
                          "Imputer whose candidates are 'gaussian' and polymodal models")

    @classmethod
    def load(cls, folder: Path, device: str) -> IterativeCandidate:
        raise ModelFileError(f"{folder}: an {cls.kind} candidate is never saved")


KINDS: dict[str, type[Candidate]] = {c.kind: c for c in (ModelCandidate, GaussianCandidate, IterativeCandidate)}
