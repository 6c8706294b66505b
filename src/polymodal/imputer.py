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

import math
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import __version__
from .candidates import BLOCK, KINDS, Candidate, GaussianCandidate, IterativeCandidate, ModelCandidate
from .config import ConfigError
from .data import Batch
from .evaluation import hold_out, imputation_scores
from .files import CONFIG, FORMAT, ModelFileError, replace_folder, write_json
from .models import MODELS
from .persistence import TRANSFORM, load_transform, read_json
from .progress import counted
from .tables import TableSchema, _frame
from .training import resolve_device, seed_stream, torch_threads

# The models a table can be imputed with: those of static data.
TABLE_MODELS = sorted(name for name, cls in MODELS.items() if cls.data != "sequences")
# Candidates fitted on the table's cells as one array (numeric columns only): the Gaussian
# mixture fitted by EM, and scikit-learn's IterativeImputer with its default BayesianRidge
# ("iterative") and with ExtraTreesRegressor (a MissForest-like).
CELLWISE = ("gaussian", *IterativeCandidate.NAMES)
# model="auto" (the default): these compete per column.
AUTO_CANDIDATES = ("gaussian", "miwae")
IMPUTER = "imputer.json"
# Importance samples per cell when scoring the held-out cells during training. They cost more
# than MIWAE's steps on nafld1 and STAR, but 25 stopped MIWAE earlier on STAR, at a PFC of
# 0.31-0.38 instead of 0.27-0.33 (2 of 2 runs; benchmarks/results/imputer_scale/real.json, its notes).
VALIDATION_SAMPLES = 100
# The held-out cells come from at most this many rows, so that validating costs the same on
# any table (on 10^5 rows and more, 20% of the rows would cost more than the training steps).
VALIDATION_ROWS = 1000
# With several candidates, the weight (in held-out cells) of the whole table's held-out cells
# when one column's cells choose that column's blend (see Imputer._blend).
SHRINK_CELLS = 20
# The blend weights of a numeric column are multiples of this.
WEIGHT_STEP = 0.1
# transform fills this many rows at a time (a multiple of BLOCK), in memory that does not grow with the table.
CHUNK_ROWS = 64 * BLOCK
# torch's intra-op threads when polymodal is imported: the physical cores, or OMP_NUM_THREADS.
DEFAULT_THREADS = torch.get_num_threads()


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
    cells (:class:`~polymodal.GaussianMixture`, by EM on at most 20,000 rows; the held-out
    cells choose its number of components and ridge, compared on at most 2,000 rows), and
    ``"miwae"``, the best deep imputer of ``benchmarks/tabular.py``. Each numeric column is
    filled by the convex combination of the candidates' fills (weights multiples of 0.1) with
    the least held-out squared error, that error shrunk towards the same weights' error over the whole table (:meth:`_blend`: a
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
    :class:`~polymodal.TableSchema`. An integer column (an integer dtype, or floats whose
    observed values are all whole) gets the model's estimate as it is, a float where it is not
    whole, as scikit-learn's imputers give it: rounding a 0/1 column's 0.3 to 0 raises its error
    (on survival's ``nafld1`` at 10^4 rows the NRMSE was 0.774-0.782 rounded and is 0.730-0.744
    not, over 3 seeds, against IterativeImputer's 0.736-0.752: benchmarks/results/imputer_scale/real.json)
    and biases estimates drawn from the filled table. ``round_integers=True`` rounds them, in
    their dtype.

    Training: ``steps`` optimisation steps of Adam (``lr``) at most (``None``: 1500, whatever
    the size of the table), on batches of ``batch_size`` rows (``None``: the whole table up to
    256 rows, else 256) drawn from every row. In a ``validation`` fraction of the rows (at most
    1000 rows), a ``holdout`` fraction of the observed cells is hidden from training (MCAR,
    seeded by ``random_state``; the rows train with their other cells); every 20 steps these
    cells are imputed with 100 importance samples and scored (NRMSE numeric, PFC categorical,
    averaged over columns). The cost of ``fit`` is thus bounded by the step budget, not by the
    number of rows, beyond one pass over the table to read it (and IterativeImputer's fit, a
    candidate only when listed). Training stops after ``patience`` scores without improvement and keeps the
    best weights. With ``validation=0``, ``holdout=0`` or ``patience=None``, all ``steps`` run
    on every cell and ``validation_score_`` is NaN; so does a table too small to hide a cell.

    ``samples`` importance samples estimate each imputation in ``transform`` (100, as many as
    the held-out cells that chose the blend were filled with: 1000 cost 10x the time for an
    NRMSE lower by 0-2% on breast cancer and wine, which matters less than a fill of 10^6
    rows in minutes rather than hours). ``samples=0``
    decodes the posterior mean of the latent given the observed cells instead: fast, but the
    decoder's output at one latent point is not E[x_u | x_o], and for MIWAE it can be far
    worse than the column mean (the encoder of an importance-weighted bound need not be a
    good posterior); use it only for models trained as plain VAEs (``vsae``, ``mvae``,
    ``zerofill-vae``) and check ``validation_scores_``.

    ``transform`` returns a DataFrame for a DataFrame (same index and columns, categorical
    columns in their categories) and an array otherwise; :meth:`sample` returns multiple
    imputations drawn from the model's posterior predictive, :meth:`predictive_std` their
    per-cell standard deviation. They fill ``CHUNK_ROWS`` rows at a time, each block of 256
    rows from its own seeded random stream, so memory beyond the output does not grow with the
    table and :meth:`transform_chunks` (a table read in chunks) gives what one ``transform``
    gives. ``progress`` shows bars for training and for filling. ``threads``: torch's
    intra-op threads (``"auto"``: one for the models' training, the idle cores for the
    Gaussian mixture's EM and the fills, see :func:`auto_threads`).

    ``save(folder)`` writes the fitted imputer: ``imputer.json`` (options, weights per column,
    the kind of each candidate), ``transform.json`` and one saved-model folder per candidate
    (:mod:`polymodal.persistence`); the folder is written afresh, so nothing of an imputer
    saved there before is left. :func:`load_imputer` reads it back. One whose candidates
    include ``"iterative"`` or ``"missforest"`` cannot be saved (scikit-learn's estimators only
    pickle, and polymodal writes no pickles).
    """

    def __init__(
        self,
        model: str | Sequence[str] = "auto",
        model_options: Mapping[str, Any] | None = None,
        categorical: Sequence[str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        numeric: str | Mapping[str, Any] | None = None,
        round_integers: bool = False,
        steps: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-2,
        validation: float = 0.2,
        holdout: float = 0.2,
        patience: int | None = 5,
        samples: int = 100,
        random_state: int = 0,
        device: str = "cpu",
        threads: int | str = "auto",
        progress: bool = False,
    ):
        self.model = model
        self.model_options = model_options
        self.categorical = categorical
        self.groups = groups
        self.numeric = numeric
        self.round_integers = round_integers
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.validation = validation
        self.holdout = holdout
        self.patience = patience
        self.samples = samples
        self.random_state = random_state
        self.device = device
        self.threads = threads
        self.progress = progress

    def fit(self, X: Any, y: Any = None) -> Imputer:
        self._check_params()
        frame = self._table(X, reset=True)
        self.tables_ = TableSchema(categorical=self.categorical, groups=self.groups, numeric=self.numeric,
                                   round_integers=self.round_integers).fit(frame)
        batch = self.tables_.transform(frame)
        names = self._fitted_candidates(batch)
        rows, truth, hidden, _ = self.validation_split(batch)
        fitted, fills, self.histories_ = {}, {}, {}
        for name in names:
            score = None
            if truth is not None:
                def score(candidate: Candidate, name: str = name) -> float:
                    return float(self._scores(self._fill(candidate, hidden, VALIDATION_SAMPLES), name, truth, hidden).mean())
            with self._random_stream():
                fitted[name] = self._candidate(name).fit(rows, score)
                if truth is not None:
                    fills[name] = self._fill(fitted[name], hidden, VALIDATION_SAMPLES)
            self.histories_[name] = fitted[name].history
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
        generative = [n for n in names if n not in IterativeCandidate.NAMES and (n != "gaussian" or not self._categorical(batch))]
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

    def validation_split(self, batch: Batch) -> tuple[Batch, Batch | None, Batch | None, torch.Tensor]:
        """The rows to train on (every row, the held-out cells hidden), the validation rows as
        they are (``truth``) and with their held-out cells hidden (``hidden``), and their
        positions in ``batch``; ``None`` twice (and no positions) when nothing is held out. The
        validation rows train too, without their held-out cells: the models learn from every
        row (lower test NRMSE on 5 of 6 tables and seeds than training without them, measured with
        ``python -m benchmarks.imputer``)."""
        order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(self.random_state))
        held = min(int(self.validation * len(batch)), VALIDATION_ROWS) if self.patience is not None and self.holdout > 0 else 0
        if not held:
            return batch, None, None, order[:0]
        truth = batch.select(order[:held])
        hidden = hold_out(truth, self.holdout, "mcar", self.random_state)
        # a column whose every observed cell was held out would have nothing to learn from: it keeps them
        elsewhere = {n: batch.observed[n].sum(0) > truth.observed[n].sum(0) for n in batch.schema.names}
        hidden = truth.with_observed({n: hidden.observed[n] for n in batch.schema.names
                                      if (elsewhere[n] | hidden.observed[n].any(0)).all()})
        if all(bool((truth.observed[n] == hidden.observed[n]).all()) for n in batch.schema.names):
            return batch, None, None, order[:0]  # nothing hidden: no score to watch
        masks = {}
        for n in batch.schema.names:
            masks[n] = batch.observed[n].clone()
            masks[n][order[:held]] = hidden.observed[n]
        return batch.with_observed(masks), truth, hidden, order[:held]

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
        if all(name in IterativeCandidate.NAMES for name in names):
            raise ConfigError(f"Imputer: the candidates need a generative model among them ('gaussian' or one of "
                              f"{TABLE_MODELS}), got {self.model!r}")
        for name in ("validation", "holdout"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"Imputer: {name} must be a fraction in [0, 1), got {value}")
        if not isinstance(self.round_integers, (bool, np.bool_)):
            raise ConfigError(f"Imputer: round_integers must be True or False, got {self.round_integers!r}")
        if self.threads != "auto" and (isinstance(self.threads, bool) or not isinstance(self.threads, numbers.Integral)
                                       or self.threads < 1):
            raise ConfigError(f"Imputer: threads must be 'auto' or an integer >= 1, got {self.threads!r}")
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

    def _candidate(self, name: str) -> Candidate:
        """The unfitted candidate ``name`` with this imputer's options."""
        if name == "gaussian":
            return GaussianCandidate(self.random_state, self.device)
        if name in IterativeCandidate.NAMES:
            return IterativeCandidate(name, self.random_state)
        return ModelCandidate(name, self.model_options, self.steps, self.batch_size, self.lr, self.patience,
                              self.random_state, self.device, self._threads("train"), self.progress)

    def _fill(self, candidate: Candidate, batch: Batch, samples: int, start: int = 0) -> Batch:
        """``batch`` (rows ``start`` on of a table) filled by one candidate, ``BLOCK`` rows from
        each seeded stream: the fill of a row does not depend on the chunks it came in."""
        return candidate.fill(batch, samples, self.random_state * 1_000_003 + start)

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

    def transform(self, X: Any) -> pd.DataFrame | np.ndarray:
        frame = self._input(X)
        parts = list(self.transform_chunks(frame.iloc[start : start + CHUNK_ROWS]
                                           for start in range(0, len(frame), CHUNK_ROWS)))
        out = pd.concat(parts) if len(parts) > 1 else parts[0]
        return out if isinstance(X, pd.DataFrame) else out.to_numpy()

    def transform_chunks(self, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Each of ``frames`` (consecutive chunks of one table with this imputer's columns, each
        but the last of a multiple of 256 rows) filled as :meth:`transform` fills the whole table:
        a table larger than memory is filled chunk by chunk, with a bar counting rows."""
        check_is_fitted(self, "model_")
        start = 0
        for frame in counted(frames, "impute", self.progress):
            batch = self.tables_.transform(frame)
            with self._random_stream():
                fills = {name: self._fill(c, batch, self.samples, start) for name, c in self.models_.items()}
            yield self.tables_.fill(frame, self._combine(fills, batch))
            start += len(frame)

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
        frame = self._input(X)
        chunks = list(self.sample_chunks((frame.iloc[start : start + CHUNK_ROWS]
                                          for start in range(0, len(frame), CHUNK_ROWS)), draws))
        out = [pd.concat([c[k] for c in chunks]) if len(chunks) > 1 else chunks[0][k] for k in range(draws)]
        return out if isinstance(X, pd.DataFrame) else np.stack([t.to_numpy() for t in out])

    def sample_chunks(self, frames: Iterable[pd.DataFrame], draws: int) -> Iterator[list[pd.DataFrame]]:
        """:meth:`sample` of a table given in chunks (as for :meth:`transform_chunks`): per
        chunk, its ``draws`` imputations."""
        check_is_fitted(self, "model_")
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
            raise ConfigError(f"Imputer.sample: draws must be an integer >= 1, got {draws!r}")
        start = 0
        for frame in counted(frames, "sample", self.progress):
            batch = self.tables_.transform(frame)
            with self._random_stream():
                drawn = self.model_.sample(batch, draws, max(self.samples, 1), self.random_state * 1_000_003 + start)
            yield [self.tables_.fill(frame, d) for d in drawn]
            start += len(frame)

    def predictive_std(self, X: Any, draws: int = 200) -> pd.DataFrame | np.ndarray:
        """Per cell, the standard deviation of the posterior predictive p(x_u | x_o), estimated
        from ``draws`` multiple imputations (:meth:`sample`), in the column's units: 0 for
        observed cells, NaN for categorical columns."""
        if not isinstance(draws, numbers.Integral) or draws < 2:
            raise ConfigError(f"Imputer.predictive_std: draws must be an integer >= 2 (a spread needs two draws), got {draws!r}")
        frame = self._input(X)
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

    def _input(self, X: Any) -> pd.DataFrame:
        check_is_fitted(self, "model_")
        frame = self._table(X, reset=False)
        if not isinstance(X, pd.DataFrame):
            frame.columns = self.tables_.columns_
        return frame

    def save(self, folder: str | Path) -> Path:
        """Write the fitted imputer to ``folder`` afresh; :func:`load_imputer` reads it back.

        The folder holds ``imputer.json`` (the options, the candidates' kinds, the weights of
        each column, the validation scores), ``transform.json`` (the fitted table schema) and
        one saved-model folder per candidate, named after it. Whatever the folder held before is
        replaced only once the new imputer is written whole. One that may hold scikit-learn's
        estimators is refused: they only pickle, and polymodal writes no pickles."""
        check_is_fitted(self, "model_")
        names = getattr(self, "feature_names_in_", None)
        candidates = {**self.models_, self.sampler_: self.model_}
        fitted = {"format": FORMAT, "polymodal": __version__, "params": self.get_params(),
                  "feature_names_in": None if names is None else names.tolist(),
                  "validation_scores": list(self.validation_scores_.items()),
                  "candidates": {name: c.kind for name, c in candidates.items()},
                  "weights": {c: row.to_dict() for c, row in self.weights_.iterrows()},
                  "choice": self.choice_.to_dict(), "sampler": self.sampler_}

        def write(tmp: Path) -> None:
            for name, candidate in candidates.items():
                candidate.save(tmp / name)
            write_json(tmp / TRANSFORM, self.tables_.config())
            write_json(tmp / IMPUTER, fitted)

        return replace_folder(folder, write, marks=(IMPUTER, CONFIG))

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
        after), and ``threads`` intra-op threads for the Gaussian mixture and the fills."""
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch_threads(self._threads("fill")):
            seed_stream(self.random_state, device)
            yield

    def _threads(self, work: str) -> int:
        return auto_threads(work) if self.threads == "auto" else int(self.threads)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.asarray([str(c) for c in self.tables_.columns_], dtype=object)


def auto_threads(work: str) -> int:
    """The intra-op threads of ``threads="auto"`` for ``work``: one to train the models (batches
    of 256 rows through layers of a few hundred units gain little from more), and for the
    Gaussian mixture's EM and the fills (batched over thousands of rows) the cores that are
    idle now: torch's default (the physical cores, or ``OMP_NUM_THREADS``) less the load
    average. Threads beyond the idle cores make everything slower, not a little: on a
    2-core machine with a load average of 15-28, two threads took 7.6-21x the wall time of one
    and 17-43x its CPU time for the Gaussian mixture's fit + fill and for MIWAE's steps
    (benchmarks/results/imputer_scale/threads.json)."""
    if work == "train":
        return 1
    busy = math.floor(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(DEFAULT_THREADS, DEFAULT_THREADS - busy))


def load_imputer(folder: str | Path, device: str = "cpu") -> Imputer:
    """A fitted :class:`Imputer` from a folder written by ``Imputer.save``, or from the model
    folder of a ``polymodal fit`` run on a table. A folder whose ``imputer.json`` has been
    edited into something else raises :class:`~polymodal.ModelFileError` naming the file."""
    folder = Path(folder)
    tables = load_transform(folder)
    if not isinstance(tables, TableSchema):
        raise ConfigError(f"{folder} holds a model of sequences; an Imputer fills tables")
    columns = list(tables.modality_columns_)
    path = folder / IMPUTER
    if not path.is_file():  # a model saved by `polymodal fit`
        model = ModelCandidate.load(folder, device)
        imputer = Imputer(model=model.name, device=device)
        imputer.models_, imputer.model_, imputer.sampler_ = {model.name: model}, model, model.name
        imputer.weights_ = pd.DataFrame(1.0, index=columns, columns=[model.name])
        imputer.choice_ = pd.Series(model.name, index=columns, dtype=object)
        imputer.validation_scores_ = pd.Series(math.nan, index=columns, dtype=float)
        names = tables.columns_
    else:
        imputer, names = _read_imputer(path, columns, device)
    imputer.tables_ = tables
    imputer.validation_score_ = float(imputer.validation_scores_.mean())
    imputer.n_features_in_ = len(tables.columns_)
    if names is not None:
        imputer.feature_names_in_ = np.asarray(names, dtype=object)
    return imputer


def _read_imputer(path: Path, columns: list[str], device: str) -> tuple[Imputer, list | None]:
    """The Imputer that ``imputer.json`` at ``path`` describes, its candidates loaded from the
    folders beside it; anything that does not fit is a :class:`ModelFileError` naming the file."""
    saved = read_json(path)

    def corrupt(why: str) -> ModelFileError:
        return ModelFileError(f"{path} is corrupt: {why}")

    try:
        kinds, sampler, params = dict(saved["candidates"]), saved["sampler"], dict(saved["params"])
        weights = pd.DataFrame(saved["weights"]).T.astype(float)
        choice = pd.Series(saved["choice"], dtype=object)
        scores = pd.Series(dict(saved["validation_scores"]), dtype=float)
        names = saved["feature_names_in"]
    except (KeyError, TypeError, ValueError) as error:
        raise corrupt(f"{error!r}") from None
    unknown = {name: kind for name, kind in kinds.items() if kind not in KINDS}
    if unknown:
        raise corrupt(f"candidates of unknown kinds {unknown}; known kinds {sorted(KINDS)}")
    if sampler not in kinds:
        raise corrupt(f"the sampler {sampler!r} is not one of its candidates {sorted(kinds)}")
    used = [name for name in weights.columns if (weights[name] > 0).any()]
    if sorted(map(str, weights.index)) != sorted(map(str, columns)) or not set(used) <= set(kinds):
        raise corrupt(f"weights for columns {list(weights.index)} and candidates {used}; the table "
                      f"has columns {columns} and the candidates are {sorted(kinds)}")
    weights = weights.reindex(columns)
    if not np.isfinite(weights.to_numpy()).all() or (weights < 0).any().any() or \
            not np.allclose(weights.sum(axis=1), 1.0):
        raise corrupt("each column's weights must be non-negative numbers that sum to 1")
    choice = choice.reindex(columns)
    if not choice.isin(list(weights.columns)).all():
        raise corrupt(f"the choice per column {choice.to_dict()} names candidates it does not have")
    known = Imputer().get_params()  # a folder saved by an older version may name options since removed
    imputer = Imputer(**{**{k: v for k, v in params.items() if k in known}, "device": device})
    try:
        imputer._check_params()
    except ConfigError as error:
        raise corrupt(str(error)) from None
    candidates = {name: KINDS[kinds[name]].load(path.parent / name, device) for name in {*used, sampler}}
    imputer.models_ = {name: candidates[name] for name in used}
    imputer.model_, imputer.sampler_ = candidates[sampler], sampler
    imputer.weights_, imputer.choice_, imputer.validation_scores_ = weights, choice, scores
    return imputer, names
