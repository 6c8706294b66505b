"""A scikit-learn imputer backed by a polymodal model.

:class:`Imputer` follows the estimator contract (``get_params`` / ``set_params``, ``clone``,
pipelines, ``fit`` / ``transform`` with NaN for missing cells): ``fit`` learns a model from
the incomplete table alone (no complete rows needed), ``transform`` fills every NaN cell
with the model's importance-sampled estimate E[x_u | x_o] and returns observed cells
unchanged. Each column is its own modality (see :class:`~polymodal.TableSchema`), so
masking is per cell.

Validation is on held-out *cells*, not on the model's loss: ``fit`` hides a seeded MCAR
fraction of the observed cells of a fraction of the rows from training, and scores the
imputation of exactly those cells (NRMSE for numeric columns, PFC for categorical ones).
That score drives early stopping, is kept as ``validation_score_`` (overall) and
``validation_scores_`` (per column), and chooses, per column, between candidate models
with ``model="auto"``.

Input goes through scikit-learn's ``validate_data`` (sparse and complex input, 1-D arrays
and a changed number or names of features are refused there) and then through
:class:`~polymodal.TableSchema`, which names the column of any bad cell. ``random_state``
seeds a private random stream for ``fit`` and for each ``transform``: two transforms of the
same table give the same fill, and the caller's global torch stream is left as it was.
"""

from __future__ import annotations

import json
import math
import numbers
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .config import ConfigError
from .data import Batch, concat
from .evaluation import draw_imputations, hold_out, imputation_scores
from .files import ModelFileError, atomic_write, write_json
from .mixture import GaussianMixture
from .models import MODELS
from .models.base import Model
from .persistence import TRANSFORM, load, load_transform
from .progress import chunked
from .tables import TableSchema, _frame
from .training import Trainer, resolve_device, seed_stream, torch_threads

# The models a table can be imputed with: those of static data.
TABLE_MODELS = sorted(name for name, cls in MODELS.items() if cls.data != "sequences")
# Candidates fitted on the table's cells as one array (numeric columns only): the Gaussian
# mixture fitted by EM, and scikit-learn's IterativeImputer with its default BayesianRidge
# ("iterative") and with ExtraTreesRegressor (a MissForest-like).
CELLWISE = ("gaussian", "iterative", "missforest")
# scikit-learn's candidates: they only pickle, so an Imputer that may hold one is not saved.
CLASSICAL = ("iterative", "missforest")
# model="auto" (the default): these compete per column.
AUTO_CANDIDATES = ("gaussian", "miwae")
# The Gaussian mixtures tried by the "gaussian" candidate, as (components, ridge); the
# held-out cells choose one, and without them the first is fitted.
GAUSSIAN_GRID = ((1, 0.01), (1, 0.001), (1, 0.1), (3, 0.1))
IMPUTER = "imputer.json"
GAUSSIAN = "gaussian.safetensors"
# The Imputer's options of a model when model_options is None: MIWAE's bound with 10 samples
# instead of 20 halves the time per step at the same held-out NRMSE (benchmarks/RESULTS.md).
MODEL_DEFAULTS = {"miwae": {"samples": 10}}
# Importance samples per cell when scoring the held-out cells during training.
VALIDATION_SAMPLES = 100
# With several candidates, the weight (in held-out cells) of the whole table's held-out cells
# when one column's cells choose that column's blend (see Imputer._blend).
SHRINK_CELLS = 20
# The blend weights of a numeric column are multiples of this.
WEIGHT_STEP = 0.1
# Optimisation steps between two validations.
STEPS_PER_VALIDATION = 20
# With batch_size=None, tables of up to this many training rows train in one full batch, larger ones in batches of it.
FULL_BATCH = 256


def training_steps(rows: int) -> int:
    """The default step budget for a table with ``rows`` training rows: 1500 steps, or five
    epochs of 256-row batches if that is more. Early stopping on the held-out cells usually
    ends training well before (about 300 steps on scikit-learn's breast cancer table)."""
    return max(1500, 5 * math.ceil(rows / FULL_BATCH))


def simplex_grid(k: int, step: float) -> torch.Tensor:
    """Every weight vector of ``k`` non-negative multiples of ``step`` summing to one, ``[points, k]``."""
    def split(units: int, parts: int) -> Iterator[tuple[int, ...]]:
        if parts == 1:
            yield (units,)
            return
        for first in range(units + 1):
            for rest in split(units - first, parts - 1):
                yield first, *rest

    units = round(1 / step)
    return torch.tensor(list(split(units, k)), dtype=torch.float64) / units


class Imputer(TransformerMixin, BaseEstimator):
    """Fill the NaN cells of a table with a generative model trained on that incomplete table.

    ``model="auto"`` (the default) fits two candidates and blends them per column on the
    held-out cells: ``"gaussian"``, a Gaussian mixture fitted by EM to the incomplete numeric
    cells (:class:`~polymodal.GaussianMixture`; the held-out cells choose its number of
    components and ridge among ``GAUSSIAN_GRID``), and ``"miwae"``, the best deep imputer of
    ``benchmarks/tabular.py``. Each numeric column is filled by the convex combination of the
    candidates' fills (weights multiples of 0.1) with the least held-out squared error, that
    error shrunk towards the same weights' error over the whole table (:meth:`_blend`: a
    column with few held-out cells follows the table); each categorical column by the
    polymodal model with the least shrunk PFC. ``weights_`` holds the weights per column,
    ``choice_`` the heaviest candidate, ``candidate_scores_`` each candidate's raw held-out
    scores. A list such as ``["gaussian", "miwae", "missforest"]`` makes those compete
    instead: any polymodal model for static data (``"vsae"``, ``"zerofill-vae"``, ``"mvae"``,
    ...), ``"gaussian"``, and scikit-learn's ``IterativeImputer`` with its BayesianRidge
    (``"iterative"``) or with 50 extra trees per column (``"missforest"``; both numeric
    columns only, ``max_iter=10``). One name fits that model alone; ``model_options``
    configure a single polymodal model (``None``: its defaults, except MIWAE's bound, which
    uses 10 importance samples here instead of 20; ``{}``: the model's own defaults).

    ``categorical``, ``groups`` and ``numeric`` (the likelihood of numeric columns, on values
    min-max scaled to [0, 1]; default a Gaussian of fixed scale 0.1, a squared error;
    ``{"name": "gaussian", "learn_scale": True}`` lets the decoder learn each cell's spread,
    which :meth:`sample` then reflects) are passed to
    :class:`~polymodal.TableSchema`.

    Training: ``steps`` optimisation steps of Adam (``lr``) at most (``None``:
    :func:`training_steps`, sized to the data), on batches of ``batch_size`` rows (``None``:
    the whole table up to 256 rows, else 256). In a ``validation`` fraction of the rows, a
    ``holdout`` fraction of the observed cells is hidden from training (MCAR, seeded by
    ``random_state``; the rows train with their other cells); every 20 steps these cells are
    imputed with 100 importance samples and scored (NRMSE numeric, PFC categorical, averaged
    over columns). Training stops after ``patience`` scores without improvement and keeps the
    best weights. With ``validation=0``, ``holdout=0`` or ``patience=None``, all ``steps`` run
    on every cell and ``validation_score_`` is NaN; so does a table too small to hide a cell.

    ``samples`` importance samples estimate each imputation in ``transform``. ``samples=0``
    decodes the posterior mean of the latent given the observed cells instead: fast, but the
    decoder's output at one latent point is not E[x_u | x_o], and for MIWAE it can be far
    worse than the column mean (the encoder of an importance-weighted bound need not be a
    good posterior); use it only for models trained as plain VAEs (``vsae``, ``mvae``,
    ``zerofill-vae``) and check ``validation_scores_``.

    ``transform`` returns a DataFrame for a DataFrame (same index and columns, categorical
    columns in their categories) and an array otherwise; :meth:`sample` returns multiple
    imputations drawn from the model's posterior predictive, :meth:`predictive_std` their
    per-cell standard deviation. ``progress`` shows bars for training and for filling.

    ``save(folder)`` writes the fitted imputer as safetensors weights and JSON;
    :func:`load_imputer` reads it back. One whose candidates include ``"iterative"`` or
    ``"missforest"`` cannot be saved (scikit-learn's estimators only pickle, and polymodal
    writes no pickles).
    """

    def __init__(
        self,
        model: str | Sequence[str] = "auto",
        model_options: Mapping[str, Any] | None = None,
        categorical: Sequence[str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        numeric: str | Mapping[str, Any] | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-2,
        validation: float = 0.2,
        holdout: float = 0.2,
        patience: int | None = 5,
        samples: int = 1000,
        random_state: int = 0,
        device: str = "cpu",
        progress: bool = False,
    ):
        self.model = model
        self.model_options = model_options
        self.categorical = categorical
        self.groups = groups
        self.numeric = numeric
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.validation = validation
        self.holdout = holdout
        self.patience = patience
        self.samples = samples
        self.random_state = random_state
        self.device = device
        self.progress = progress

    def fit(self, X: Any, y: Any = None) -> Imputer:
        self._check_params()
        frame = self._table(X, reset=True)
        self.tables_ = TableSchema(categorical=self.categorical, groups=self.groups, numeric=self.numeric).fit(frame)
        batch = self.tables_.transform(frame)
        names = self._fitted_candidates(batch)
        order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(self.random_state))
        held = int(self.validation * len(batch)) if self.patience is not None and self.holdout > 0 else 0
        train, truth = batch.select(order[held:]), batch.select(order[:held]) if held else None
        hidden = hold_out(truth, self.holdout, "mcar", self.random_state) if held else None
        if hidden is not None:  # a column whose every observed cell was held out would have nothing to learn from
            starved = [n for n in batch.schema.names
                       if not (train.observed[n].any(0) | hidden.observed[n].any(0)).all()]
            hidden = truth.with_observed({n: hidden.observed[n] for n in batch.schema.names if n not in starved})
        if hidden is not None and all(bool((truth.observed[n] == hidden.observed[n]).all()) for n in batch.schema.names):
            truth = hidden = None  # nothing hidden: no score to watch
        fitted, fills, self.histories_ = {}, {}, {}
        # the validation rows train too, without their held-out cells: those stay unseen, and the
        # models learn from every row (lower NRMSE on 5 of 6 tables and seeds, benchmarks/RESULTS.md)
        rows = concat([train, hidden]) if hidden is not None else train
        for name in names:
            with self._random_stream():
                fitted[name] = self._fit_candidate(name, rows, truth, hidden)
                if truth is not None:
                    fills[name] = self._fill(fitted[name], hidden, VALIDATION_SAMPLES)
        columns = list(self.tables_.modality_columns_)
        scores = {name: self._scores(fills[name], name, truth, hidden) if truth is not None else pd.Series(dtype=float)
                  for name in names}
        self.candidate_scores_ = pd.DataFrame(scores).reindex(columns)
        self.weights_ = self._blend(fills, truth, hidden) if truth is not None else self._even(names, batch)
        self.choice_ = self.weights_.idxmax(axis=1).astype(object)
        self.models_ = {name: fitted[name] for name in names if (self.weights_[name] > 0).any()}
        # the draws: the Gaussian mixture's where it can fill every column (its spread is fitted,
        # a polymodal model's default likelihood has a fixed one: on wine its 90% intervals
        # covered 0.64-0.83 of the hidden cells, the mixture's 0.83-0.92), else the best model
        generative = [n for n in names if n not in CLASSICAL and (n != "gaussian" or not self._categorical(batch))]
        self.sampler_ = ("gaussian" if "gaussian" in generative else
                         min(generative, key=lambda n: self.candidate_scores_[n].mean())
                         if truth is not None and len(generative) > 1 else generative[0])
        self.model_ = fitted[self.sampler_]
        if truth is not None:
            blended = imputation_scores(truth, hidden, self._combine({n: fills[n] for n in self.models_}, hidden))
            self.validation_scores_ = pd.Series({c: blended[c].get("pfc", blended[c].get("nrmse")) if c in blended
                                                 else math.nan for c in columns}, dtype=float)
        else:
            self.validation_scores_ = pd.Series(math.nan, index=columns, dtype=float)
        self.validation_score_ = float(self.validation_scores_.mean()) if truth is not None else math.nan
        return self

    def _blend(self, fills: dict[str, Batch], truth: Batch, hidden: Batch) -> pd.DataFrame:
        """Per column, the weights of the candidates whose fills are averaged, chosen on the
        held-out cells. A numeric column takes the convex combination (weights on a grid of
        ``WEIGHT_STEP``) with the least squared error over its held-out cells, each column's
        error divided by its variance and shrunk towards the error of the same weights over
        all numeric columns, as a mean over n cells would be under a prior worth
        ``SHRINK_CELLS`` cells: (n e_c(w) + n0 e(w)) / (n + n0). A column with few held-out
        cells then follows the weights best for the table as a whole, unless its own cells
        say clearly otherwise. A categorical column takes the one candidate with the lowest
        PFC, shrunk alike."""
        names = list(fills)
        weights = pd.DataFrame(0.0, index=list(self.tables_.modality_columns_), columns=names)
        numeric = [m for m in truth.schema if not m.categorical]
        if numeric:
            grid = simplex_grid(len(names), WEIGHT_STEP)  # [g, k]
            errors, cells = [], []
            for m in numeric:
                held = truth.observed[m.name] & ~hidden.observed[m.name]
                true = truth.values[m.name][held].double()
                guesses = torch.stack([fills[n].values[m.name][held].double() for n in names])  # [k, cells]
                spread = truth.values[m.name][truth.observed[m.name]].double().var() if held.any() else torch.tensor(1.0)
                squared = ((grid @ guesses - true) ** 2).mean(1) if held.any() else torch.zeros(len(grid))
                errors.append(squared / spread.clamp_min(1e-12))
                cells.append(int(held.sum()))
            errors, cells = torch.stack(errors), torch.tensor(cells, dtype=torch.float64)[:, None]
            table = errors[cells[:, 0] > 0].mean(0)
            shrunk = (cells * errors + SHRINK_CELLS * table) / (cells + SHRINK_CELLS)
            for m, best in zip(numeric, shrunk.argmin(1)):
                weights.loc[m.name] = grid[best].numpy()
        categorical = [m.name for m in truth.schema if m.categorical]
        if categorical:
            pfc = self._shrunk(self.candidate_scores_.loc[categorical], truth, hidden)
            deep = [n for n in names if n not in CELLWISE]
            for c in categorical:
                weights.loc[c, pfc.loc[c, deep].idxmin() if pfc.loc[c, deep].notna().any() else deep[0]] = 1.0
        return weights.round(6)

    def _even(self, names: Sequence[str], batch: Batch) -> pd.DataFrame:
        """Without held-out cells: numeric columns average every candidate, categorical ones take the first model."""
        weights = pd.DataFrame(0.0, index=list(self.tables_.modality_columns_), columns=list(names))
        deep = [n for n in names if n not in CELLWISE]
        for m in batch.schema:
            if m.categorical:
                weights.loc[m.name, deep[0]] = 1.0
            else:
                weights.loc[m.name] = 1.0 / len(names)
        return weights

    def _shrunk(self, table: pd.DataFrame, truth: Batch, hidden: Batch) -> pd.DataFrame:
        """Per-column scores shrunk towards each candidate's mean over these columns, as a
        column's mean over n held-out cells would be under a prior worth ``SHRINK_CELLS``
        cells: (n s_c + n0 s_mean) / (n + n0)."""
        cells = pd.Series({m: int((truth.observed[m] & ~hidden.observed[m]).sum()) for m in table.index}, dtype=float)
        return table.mul(cells, axis=0).add(SHRINK_CELLS * table.mean(), axis=1).div(cells + SHRINK_CELLS, axis=0)

    def _check_params(self) -> None:
        names = self._candidates()
        for name in names:
            if name not in (*TABLE_MODELS, *CELLWISE):
                why = f" ({name!r} models sequences, not tables)" if name in MODELS else ""
                raise ConfigError(f"Imputer: model must be 'auto', one of {TABLE_MODELS + list(CELLWISE)} or a list of "
                                  f"them, got {name!r}{why}")
        if all(name in CLASSICAL for name in names):
            raise ConfigError(f"Imputer: the candidates need a generative model among them ('gaussian' or one of "
                              f"{TABLE_MODELS}), got {self.model!r}")
        for name in ("validation", "holdout"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"Imputer: {name} must be a fraction in [0, 1), got {value}")
        for name, least in (("samples", 0), ("random_state", 0), ("steps", 1), ("batch_size", 1), ("patience", 1)):
            value = getattr(self, name)
            if value is None and name in ("steps", "batch_size", "patience"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ConfigError(f"Imputer: {name} must be an integer >= {least}, got {value!r}")
        deep = [name for name in names if name not in CELLWISE]
        if len(deep) > 1 and self.model_options:
            raise ConfigError(f"Imputer: model_options configure one model; with model={self.model!r} leave them out")

    def _candidates(self) -> tuple[str, ...]:
        """The models that compete per column: "auto"'s, the one named, or those listed."""
        if isinstance(self.model, str):
            return AUTO_CANDIDATES if self.model == "auto" else (self.model,)
        return tuple(dict.fromkeys(self.model))

    def _categorical(self, batch: Batch) -> list[str]:
        return [c for m in batch.schema if m.categorical for c in self.tables_.modality_columns_[m.name]]

    def _fitted_candidates(self, batch: Batch) -> list[str]:
        """The candidates worth fitting on this table: those of the cells (numeric columns
        only) are left out of a table without numeric columns, and cannot fill one alone
        that has categorical columns."""
        names = list(self._candidates())
        categorical = self._categorical(batch)
        if categorical and all(name in CELLWISE for name in names):
            raise ConfigError(f"Imputer: model={self.model!r} fills numeric columns only, and {categorical} are "
                              "categorical; add a polymodal model, such as 'miwae'")
        if all(m.categorical for m in batch.schema):
            names = [name for name in names if name not in CELLWISE]
        return names

    def _fit_candidate(self, name: str, train: Batch, truth: Batch | None, hidden: Batch | None) -> Any:
        """One candidate trained on ``train`` (every row, the held-out cells hidden), stopped
        early on (or, for the Gaussian mixture, chosen by) the imputation of the cells that
        ``hidden`` hides in ``truth``."""
        if name == "gaussian":
            return self._fit_gaussian(train, truth, hidden)
        if name in CLASSICAL:
            from sklearn.ensemble import ExtraTreesRegressor
            from sklearn.experimental import enable_iterative_imputer  # noqa: F401
            from sklearn.impute import IterativeImputer

            seed = self.random_state
            trees = ExtraTreesRegressor(n_estimators=50, random_state=seed, n_jobs=1) if name == "missforest" else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings: max_iter=10 is a budget
                return IterativeImputer(trees, max_iter=10, random_state=seed).fit(self._cells(train))
        options = MODEL_DEFAULTS.get(name, {}) if self.model_options is None else self.model_options
        model = MODELS[name](train.schema, **dict(options))
        batch_size = self.batch_size or min(len(train), FULL_BATCH)
        per_epoch = math.ceil(len(train) / batch_size)
        steps = self.steps or training_steps(len(train))
        score = None
        if truth is not None:
            def score(m: Model) -> float:
                return float(self._scores(self._fill(m, hidden, VALIDATION_SAMPLES), name, truth, hidden).mean())
        trainer = Trainer(model, epochs=max(1, round(steps / per_epoch)), batch_size=batch_size, lr=self.lr,
                          patience=self.patience if truth is not None else None, seed=self.random_state,
                          valid_every=max(1, round(STEPS_PER_VALIDATION / per_epoch)), device=self.device,
                          progress=self.progress)
        history = trainer.fit(train, score=score)
        self.histories_[name] = pd.DataFrame(history)
        return model

    def _fit_gaussian(self, train: Batch, truth: Batch | None, hidden: Batch | None) -> GaussianMixture:
        """The Gaussian mixture of ``GAUSSIAN_GRID`` with the best held-out score (the first
        without held-out cells); ``histories_["gaussian"]`` lists each one's score, EM
        steps and seconds."""
        cells, device = self._cells(train), resolve_device(self.device)
        grid = GAUSSIAN_GRID if truth is not None else GAUSSIAN_GRID[:1]
        tried, results = [], []
        for components, ridge in grid:
            if components > 1 and components * 10 > len(train):
                continue  # a component needs rows to estimate its covariance from
            start = tried[0] if tried and components == grid[0][0] else None  # warm: fewer EM steps
            began = time.perf_counter()
            mixture = GaussianMixture(components, ridge, seed=self.random_state, device=device).fit(cells, start)
            took = time.perf_counter() - began
            score = (float(self._scores(self._fill(mixture, hidden, 0), "gaussian", truth, hidden).mean())
                     if truth is not None else math.nan)
            tried.append(mixture)
            results.append({"components": components, "ridge": ridge, "valid_score": score,
                            "iterations": len(mixture.log_likelihoods_), "seconds": took})
        self.histories_["gaussian"] = pd.DataFrame(results)
        return tried[int(np.nanargmin([r["valid_score"] for r in results])) if truth is not None else 0]

    def _fill(self, candidate: Any, batch: Batch, samples: int) -> Batch:
        """``batch`` filled by one candidate: a model's importance-sampled fill, or the
        conditional mean of the Gaussian mixture or IterativeImputer's fill."""
        if isinstance(candidate, Model):
            return concat(chunked(lambda rows: candidate.impute(batch.select(rows), samples=samples).to("cpu"),
                                  len(batch), progress=self.progress, desc="impute"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            filled = candidate.transform(self._cells(batch))
        return self._batch(filled, batch)

    def _scores(self, filled: Batch, name: str, truth: Batch, hidden: Batch) -> pd.Series:
        """Per column: the NRMSE (numeric) or PFC (categorical) of one candidate's fill on the
        hidden cells; NaN where it does not compete (the cells' candidates on categorical columns)."""
        scores = imputation_scores(truth, hidden, filled)
        out = pd.Series({column: s.get("pfc", s.get("nrmse")) for column, s in scores.items()}, dtype=float)
        if name in CELLWISE:
            out[[m.name for m in truth.schema if m.categorical and m.name in out.index]] = math.nan
        return out

    def _combine(self, fills: dict[str, Batch], like: Batch) -> Batch:
        """``like`` filled by the candidates' fills mixed with ``weights_``: the weighted mean
        on numeric columns, the chosen candidate's category on categorical ones; observed
        cells exactly as they were."""
        values = {}
        for m in like.schema:
            if m.categorical:
                value = fills[self.choice_[m.name]].values[m.name]
            else:
                value = sum(float(w) * fills[n].values[m.name].double() for n, w in self.weights_.loc[m.name].items()
                            if w > 0 and n in fills).to(like.values[m.name].dtype)
            values[m.name] = torch.where(like.observed[m.name], like.values[m.name], value)
        return Batch(like.schema, values, {k: torch.ones_like(v) for k, v in like.observed.items()})

    def _cells(self, batch: Batch) -> np.ndarray:
        """The batch as one array ``[rows, cells]`` in modality order, NaN where unobserved."""
        arrays = batch.numpy(nan=True)
        return np.concatenate([arrays[m.name].reshape(len(batch), -1) for m in batch.schema], 1)

    def _batch(self, cells: np.ndarray, like: Batch) -> Batch:
        """An array of :meth:`_cells`'s layout as a batch like ``like``; categorical codes are
        rounded into range, observed entries kept."""
        values, start = {}, 0
        for m in like.schema:
            width = int(np.prod(m.shape, dtype=int))
            block = torch.as_tensor(cells[:, start : start + width].reshape(len(like), *m.shape), dtype=torch.float32)
            if m.categorical:
                block = block.round().clamp(0, m.num_classes - 1).long()
            values[m.name] = torch.where(like.observed[m.name], like.values[m.name], block.to(like.values[m.name].dtype))
            start += width
        return Batch(like.schema, values, {k: torch.ones_like(v) for k, v in like.observed.items()})

    def transform(self, X: Any) -> pd.DataFrame | np.ndarray:
        frame, batch = self._input(X)
        with self._random_stream():
            fills = {name: self._fill(candidate, batch, self.samples) for name, candidate in self.models_.items()}
        out = self.tables_.fill(frame, self._combine(fills, batch))
        return out if isinstance(X, pd.DataFrame) else out.to_numpy()

    def sample(self, X: Any, draws: int = 10) -> list[pd.DataFrame] | np.ndarray:
        """``draws`` multiple imputations of ``X`` from the model's posterior predictive, for
        Rubin's rules: for each row and draw, a latent z is resampled among ``samples``
        importance draws from q(z | x_o) with probability proportional to its weight
        p(x_o, z) / q(z | x_o), and the missing cells are drawn from p(x_u | z). Observed cells
        are kept. A list of DataFrames for a DataFrame, else an array ``[draws, rows, columns]``.

        With several candidates, the draws come from one generative candidate, ``model_``
        (``sampler_`` names it), whatever the blend of ``weights_`` per column: the Gaussian
        mixture if it is a candidate and the table has no categorical column (its spread is
        fitted to the data, while the polymodal models' default likelihood has a fixed scale,
        which gave too narrow intervals on wine), else the polymodal model with the best mean
        held-out score. The Gaussian mixture draws each row's
        component by its responsibility, then the missing cells from that component's
        conditional normal: exact draws from its posterior predictive.
        """
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
            raise ConfigError(f"Imputer.sample: draws must be an integer >= 1, got {draws!r}")
        frame, batch = self._input(X)
        samples = max(self.samples, 1)
        with self._random_stream():
            if isinstance(self.model_, GaussianMixture):
                cells = self.model_.sample(self._cells(batch), draws, self.random_state)
                parts = [[self._batch(c, batch) for c in cells]]
            else:
                parts = chunked(lambda rows: draw_imputations(self.model_, batch.select(rows), draws, samples,
                                                              self.random_state + rows.start),
                                len(batch), progress=self.progress, desc="sample")
        tables = [self.tables_.fill(frame, concat([p[k] for p in parts])) for k in range(draws)]
        return tables if isinstance(X, pd.DataFrame) else np.stack([t.to_numpy() for t in tables])

    def predictive_std(self, X: Any, draws: int = 200) -> pd.DataFrame | np.ndarray:
        """Per cell, the standard deviation of the posterior predictive p(x_u | x_o), estimated
        from ``draws`` multiple imputations (:meth:`sample`), in the column's units: 0 for
        observed cells, NaN for categorical columns."""
        if not isinstance(draws, numbers.Integral) or draws < 2:
            raise ConfigError(f"Imputer.predictive_std: draws must be an integer >= 2 (a spread needs two draws), got {draws!r}")
        frame, _ = self._input(X)
        stacked = self.sample(X, draws)
        numeric = [c for c in self.tables_.columns_ if c not in self.tables_.categories_]
        spread = pd.DataFrame(np.nan, index=frame.index, columns=self.tables_.columns_)
        if isinstance(X, pd.DataFrame):
            values = np.stack([t[numeric].to_numpy(dtype=float) for t in stacked])
        else:
            positions = [self.tables_.columns_.index(c) for c in numeric]
            values = stacked[:, :, positions].astype(float)
        spread[numeric] = np.where(frame[numeric].notna().to_numpy(), 0.0, values.std(0, ddof=1) if draws > 1 else 0.0)
        return spread if isinstance(X, pd.DataFrame) else spread.to_numpy(dtype=float)

    def _input(self, X: Any) -> tuple[pd.DataFrame, Batch]:
        check_is_fitted(self, "model_")
        frame = self._table(X, reset=False)
        if not isinstance(X, pd.DataFrame):
            frame.columns = self.tables_.columns_
        return frame, self.tables_.transform(frame)

    def save(self, folder: str | Path) -> Path:
        """Write the fitted imputer to ``folder``; :func:`load_imputer` reads it back.

        An imputer of one polymodal model is that model's folder (config JSON, safetensors
        weights) with the fitted table schema (``transform.json``) and ``imputer.json`` beside
        it, so ``polymodal impute`` reads it as a model folder too. An imputer of several
        candidates keeps each polymodal model in a subfolder named after it, the Gaussian
        mixture in ``gaussian.safetensors``, and the weights of each column in
        ``imputer.json``. One that may hold scikit-learn's estimators is refused: they only
        pickle, and polymodal writes no pickles."""
        check_is_fitted(self, "model_")
        classical = [name for name in self._candidates() if name in CLASSICAL]
        if classical:
            raise ConfigError(f"Imputer.save: model={self.model!r} may hold scikit-learn's {classical}, which only "
                              "pickle; save an Imputer whose candidates are 'gaussian' and polymodal models (its "
                              f"choices per column were {sorted(set(self.choice_))})")
        folder = Path(folder)
        names = getattr(self, "feature_names_in_", None)
        fitted = {"params": self.get_params(), "feature_names_in": None if names is None else names.tolist(),
                  "validation_scores": list(self.validation_scores_.items())}
        if list(self.models_) == [self.sampler_] and isinstance(self.model_, Model):
            folder = self.model_.save(folder)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            for name, candidate in {**self.models_, self.sampler_: self.model_}.items():
                if isinstance(candidate, GaussianMixture):
                    atomic_write(folder / GAUSSIAN, lambda path, c=candidate: save_file(
                        {k: v.cpu().contiguous() for k, v in c.state().items()}, str(path)))
                else:
                    candidate.save(folder / name)
            fitted |= {"weights": {c: row.to_dict() for c, row in self.weights_.iterrows()},
                       "choice": self.choice_.to_dict(),
                       "sampler": self.sampler_}
        write_json(folder / TRANSFORM, self.tables_.config())
        write_json(folder / IMPUTER, fitted)
        return folder

    def _table(self, X: Any, reset: bool) -> pd.DataFrame:
        """``X`` as a DataFrame, through scikit-learn's checks of the input and of the number
        and names of features (``reset`` records them, in ``fit``)."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True, reset=reset)
            return X
        return _frame(validate_data(self, X, reset=reset, dtype=None, ensure_all_finite=False))

    @contextmanager
    def _random_stream(self) -> Iterator[None]:
        """The torch random stream seeded with ``random_state`` (the caller's is restored
        after), and one intra-op thread, as in training: the small matrix products of imputation
        ran 4x slower on two threads with the other core busy."""
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch_threads(1):
            seed_stream(self.random_state, device)
            yield

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.asarray([str(c) for c in self.tables_.columns_], dtype=object)


def load_imputer(folder: str | Path, device: str = "cpu") -> Imputer:
    """A fitted :class:`Imputer` from a folder written by ``Imputer.save``, or from the model
    folder of a ``polymodal fit`` run on a table."""
    folder = Path(folder)
    saved = json.loads((folder / IMPUTER).read_text()) if (folder / IMPUTER).is_file() else {}
    if not isinstance(saved, dict):
        raise ModelFileError(f"{folder / IMPUTER}: expected a JSON object of the fitted imputer, got {type(saved).__name__}")
    tables = load_transform(folder)
    if not isinstance(tables, TableSchema):
        raise ConfigError(f"{folder} holds a model of sequences; an Imputer fills tables")
    if "weights" in saved:
        weights = pd.DataFrame(saved["weights"]).T.reindex(list(tables.modality_columns_))
        models, sampler = {}, saved["sampler"]
        for name in [n for n in weights.columns if (weights[n] > 0).any() or n == sampler]:
            if name != "gaussian":
                models[name] = load(folder / name, device)
            elif (folder / GAUSSIAN).is_file():
                try:
                    models[name] = GaussianMixture.from_state(load_file(str(folder / GAUSSIAN)), resolve_device(device))
                except (SafetensorError, OSError, KeyError) as error:
                    raise ModelFileError(f"{folder / GAUSSIAN} is corrupt: {error!r}") from None
            else:
                raise ModelFileError(f"{folder} is not a saved imputer: {GAUSSIAN} is missing")
        model = models[sampler]
        models = {name: models[name] for name in weights.columns if (weights[name] > 0).any()}
        choice = pd.Series(saved["choice"], dtype=object).reindex(weights.index)
    else:
        model = load(folder, device)
        sampler, models = model.name, {model.name: model}
        weights = pd.DataFrame(1.0, index=list(tables.modality_columns_), columns=[sampler])
        choice = pd.Series(sampler, index=weights.index, dtype=object)
    known = Imputer().get_params()  # a folder saved by an older version may name options since removed
    params = {k: v for k, v in (saved["params"] if "params" in saved else {"model": sampler}).items() if k in known}
    imputer = Imputer(**{**params, "device": device})
    imputer.model_, imputer.sampler_, imputer.tables_, imputer.models_ = model, sampler, tables, models
    imputer.weights_, imputer.choice_ = weights, choice
    imputer.validation_scores_ = pd.Series(dict(saved.get("validation_scores", [])), dtype=float)
    imputer.validation_score_ = float(imputer.validation_scores_.mean()) if len(imputer.validation_scores_) else math.nan
    imputer.n_features_in_ = len(tables.columns_)
    names = saved.get("feature_names_in", tables.columns_)
    if names is not None:
        imputer.feature_names_in_ = np.asarray(names, dtype=object)
    return imputer
