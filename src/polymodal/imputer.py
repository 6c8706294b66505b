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
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .config import ConfigError
from .data import Batch, concat
from .evaluation import draw_imputations, hold_out, imputation_scores
from .files import write_json
from .models import MODELS
from .models.base import Model
from .models.dmm import DeepMarkovModel
from .persistence import TRANSFORM, load, load_transform
from .progress import chunked
from .tables import TableSchema, _frame
from .training import Trainer, resolve_device, seed_stream, torch_threads

# The models a table can be imputed with: those of static data.
TABLE_MODELS = sorted(name for name, cls in MODELS.items() if not issubclass(cls, DeepMarkovModel))
# model="auto": these deep models and scikit-learn's IterativeImputer compete per column.
AUTO_CANDIDATES = ("miwae", "mvae", "zerofill-vae", "vsae", "iterative", "missforest")
# scikit-learn candidates, by name: IterativeImputer with its default BayesianRidge, and with
# ExtraTreesRegressor (a MissForest-like); fitted on the scaled cells, numeric columns only.
CLASSICAL = ("iterative", "missforest")
IMPUTER = "imputer.json"
# The Imputer's options of a model when model_options is None: MIWAE's bound with 10 samples
# instead of 20 halves the time per step at the same held-out NRMSE (benchmarks/RESULTS.md).
MODEL_DEFAULTS = {"miwae": {"samples": 10}}
# Importance samples per cell when scoring the held-out cells during training.
VALIDATION_SAMPLES = 100
# With several candidates, the weight (in held-out cells) of a candidate's score over the whole
# table when its score on one column chooses that column's model (see Imputer._shrunk).
SHRINK_CELLS = 20
# Optimisation steps between two validations.
STEPS_PER_VALIDATION = 20
# With batch_size=None, tables of up to this many training rows train in one full batch, larger ones in batches of it.
FULL_BATCH = 256


def training_steps(rows: int) -> int:
    """The default step budget for a table with ``rows`` training rows: 1500 steps, or five
    epochs of 256-row batches if that is more. Early stopping on the held-out cells usually
    ends training well before (about 300 steps on scikit-learn's breast cancer table)."""
    return max(1500, 5 * math.ceil(rows / FULL_BATCH))


class Imputer(TransformerMixin, BaseEstimator):
    """Fill the NaN cells of a table with a generative model trained on that incomplete table.

    ``model`` names a polymodal model for static data (``"miwae"``, the best deep imputer in
    ``benchmarks/tabular.py``; ``"vsae"``, ``"zerofill-vae"``, ``"mvae"``, ...), configured with
    ``model_options`` (``None``: the model's defaults, except MIWAE's bound, which uses 10
    importance samples here instead of 20; ``{}``: the model's own defaults), or is
    ``"auto"``: MIWAE, MVAE, the zero-fill VAE, VSAE and scikit-learn's ``IterativeImputer``
    (``"iterative"``; and ``"missforest"``, with 50 extra trees per column; numeric columns
    only, ``max_iter=10``) are all fitted, and each column is filled by the candidate with the
    best held-out score on it, that score shrunk towards the candidate's score over the whole
    table (:meth:`_shrunk`: a column with few held-out cells follows the table-wide best)
    (``choice_`` says which, ``candidate_scores_`` holds the raw scores); that costs the sum
    of their fits. A list such as ``["miwae", "iterative"]`` makes
    those compete instead.

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

    ``save(folder)`` writes the fitted imputer as a model folder (config JSON, safetensors
    weights, the fitted table schema as JSON); :func:`load_imputer` reads it back. An
    ``"auto"`` imputer cannot be saved (it may hold a scikit-learn estimator, which only
    pickles, and polymodal writes no pickles).
    """

    def __init__(
        self,
        model: str | Sequence[str] = "miwae",
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
        order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(self.random_state))
        held = int(self.validation * len(batch)) if self.patience is not None and self.holdout > 0 else 0
        train, truth = batch.select(order[held:]), batch.select(order[:held]) if held else None
        hidden = hold_out(truth, self.holdout, "mcar", self.random_state) if held else None
        if hidden is not None and all(bool((truth.observed[n] == hidden.observed[n]).all()) for n in batch.schema.names):
            truth = hidden = None  # nothing hidden: no score to watch
        names = self._candidates()
        fitted, scores, self.histories_ = {}, {}, {}
        # the validation rows train too, without their held-out cells: those stay unseen, and the
        # models learn from every row (lower NRMSE on 5 of 6 tables and seeds, benchmarks/RESULTS.md)
        rows = concat([train, hidden]) if hidden is not None else train
        for name in names:
            with self._random_stream():
                fitted[name] = self._fit_candidate(name, rows, truth, hidden)
            scores[name] = (self._scores(fitted[name], truth, hidden, VALIDATION_SAMPLES) if truth is not None
                            else pd.Series(dtype=float))
        table = pd.DataFrame(scores).reindex(list(self.tables_.modality_columns_))
        deep = [n for n in names if n not in CLASSICAL]
        shrunk = self._shrunk(table, truth, hidden) if truth is not None else table
        self.choice_ = pd.Series({c: row.idxmin() if row.notna().any() else deep[0] for c, row in shrunk.iterrows()},
                                 dtype=object)
        self.models_ = {name: fitted[name] for name in dict.fromkeys(self.choice_)}
        self.model_ = fitted[min(deep, key=lambda n: table[n].mean()) if truth is not None else deep[0]]
        self.candidate_scores_ = table
        self.validation_scores_ = pd.Series({c: table.loc[c, self.choice_[c]] for c in table.index}, dtype=float)
        self.validation_score_ = float(self.validation_scores_.mean()) if truth is not None else math.nan
        return self

    def _shrunk(self, table: pd.DataFrame, truth: Batch, hidden: Batch) -> pd.DataFrame:
        """Per-column scores shrunk towards each candidate's mean over the columns of the same
        kind (numeric or categorical), as a column's mean over n held-out cells would be under
        a prior worth ``SHRINK_CELLS`` cells: (n s_c + n0 s_mean) / (n + n0). A column with few
        held-out cells then goes to the candidate that is best on the table as a whole, unless
        its own cells say clearly otherwise."""
        cells = pd.Series({m: int((truth.observed[m] & ~hidden.observed[m]).sum()) for m in table.index}, dtype=float)
        kinds = pd.Series({m.name: m.categorical for m in truth.schema}).reindex(table.index)
        out = table.copy()
        for kind in kinds.unique():
            rows = kinds.index[kinds == kind]
            part = table.loc[rows]
            out.loc[rows] = part.mul(cells[rows], axis=0).add(SHRINK_CELLS * part.mean(), axis=1).div(
                cells[rows] + SHRINK_CELLS, axis=0)
        return out

    def _check_params(self) -> None:
        names = self._candidates()
        for name in names:
            if name not in (*TABLE_MODELS, *CLASSICAL):
                why = f" ({name!r} models sequences, not tables)" if name in MODELS else ""
                raise ConfigError(f"Imputer: model must be 'auto', one of {TABLE_MODELS} or a list of them (and of "
                                  f"scikit-learn's {list(CLASSICAL)}), got {name!r}{why}")
        if all(name in CLASSICAL for name in names):
            raise ConfigError(f"Imputer: the candidate models need a polymodal model among them, got {self.model!r}")
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
        if len(names) > 1 and not (self.validation and self.holdout and self.patience):
            raise ConfigError(f"Imputer: model={self.model!r} chooses on held-out cells; it needs validation > 0, "
                              "holdout > 0 "
                              f"and a patience, got validation={self.validation}, holdout={self.holdout}, "
                              f"patience={self.patience}")
        if len(names) > 1 and self.model_options:
            raise ConfigError(f"Imputer: model_options configure one model; with model={self.model!r} leave them out")

    def _candidates(self) -> tuple[str, ...]:
        """The models that compete per column: the one named, "auto"'s, or those listed."""
        if isinstance(self.model, str):
            return AUTO_CANDIDATES if self.model == "auto" else (self.model,)
        return tuple(dict.fromkeys(self.model))

    def _fit_candidate(self, name: str, train: Batch, truth: Batch | None, hidden: Batch | None) -> Any:
        """One candidate trained on ``train`` (every row, the held-out cells hidden), stopped
        early on the imputation of the cells that ``hidden`` hides in ``truth``."""
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
                return float(self._scores(m, truth, hidden, VALIDATION_SAMPLES).mean())
        trainer = Trainer(model, epochs=max(1, round(steps / per_epoch)), batch_size=batch_size, lr=self.lr,
                          patience=self.patience if truth is not None else None, seed=self.random_state,
                          valid_every=max(1, round(STEPS_PER_VALIDATION / per_epoch)), device=self.device,
                          progress=self.progress)
        history = trainer.fit(train, score=score)
        self.histories_[name] = pd.DataFrame(history)
        return model

    def _fill(self, candidate: Any, batch: Batch, samples: int) -> Batch:
        """``batch`` filled by one candidate: a model's importance-sampled fill, or IterativeImputer's."""
        if isinstance(candidate, Model):
            return concat(chunked(lambda rows: candidate.impute(batch.select(rows), samples=samples).to("cpu"),
                                  len(batch), progress=self.progress, desc="impute"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            filled = candidate.transform(self._cells(batch))
        return self._batch(filled, batch)

    def _scores(self, candidate: Any, truth: Batch, hidden: Batch, samples: int) -> pd.Series:
        """Per column: the candidate's NRMSE (numeric) or PFC (categorical) on the hidden cells;
        NaN where it does not compete (IterativeImputer on categorical columns)."""
        with self._random_stream():
            filled = self._fill(candidate, hidden, samples)
        scores = imputation_scores(truth, hidden, filled)
        out = pd.Series({name: s.get("pfc", s.get("nrmse")) for name, s in scores.items()}, dtype=float)
        if not isinstance(candidate, Model):
            out[[m.name for m in truth.schema if m.categorical and m.name in out.index]] = math.nan
        return out

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
        filled = {}
        with self._random_stream():
            for name, candidate in self.models_.items():
                filled[name] = self._fill(candidate, batch, self.samples)
        values = {m: filled[self.choice_[m]].values[m] for m in batch.schema.names}
        out = self.tables_.fill(frame, Batch(batch.schema, values, filled[self.choice_.iloc[0]].observed))
        return out if isinstance(X, pd.DataFrame) else out.to_numpy()

    def sample(self, X: Any, draws: int = 10) -> list[pd.DataFrame] | np.ndarray:
        """``draws`` multiple imputations of ``X`` from the model's posterior predictive, for
        Rubin's rules: for each row and draw, a latent z is resampled among ``samples``
        importance draws from q(z | x_o) with probability proportional to its weight
        p(x_o, z) / q(z | x_o), and the missing cells are drawn from p(x_u | z). Observed cells
        are kept. A list of DataFrames for a DataFrame, else an array ``[draws, rows, columns]``.

        With ``model="auto"`` the draws come from the deep candidate with the best overall
        held-out score (``model_``), whatever ``choice_`` picked per column.
        """
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
            raise ConfigError(f"Imputer.sample: draws must be an integer >= 1, got {draws!r}")
        frame, batch = self._input(X)
        samples = max(self.samples, 1)
        with self._random_stream():
            parts = chunked(lambda rows: draw_imputations(self.model_, batch.select(rows), draws, samples,
                                                          self.random_state + rows.start),
                            len(batch), progress=self.progress, desc="sample")
        tables = [self.tables_.fill(frame, concat([p[k] for p in parts])) for k in range(draws)]
        return tables if isinstance(X, pd.DataFrame) else np.stack([t.to_numpy() for t in tables])

    def predictive_std(self, X: Any, draws: int = 200) -> pd.DataFrame | np.ndarray:
        """Per cell, the standard deviation of the posterior predictive p(x_u | x_o), estimated
        from ``draws`` multiple imputations (:meth:`sample`), in the column's units: 0 for
        observed cells, NaN for categorical columns."""
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
        """Write the fitted imputer to ``folder``; :func:`load_imputer` reads it back."""
        check_is_fitted(self, "model_")
        if len(self._candidates()) > 1:
            raise ConfigError(f"Imputer.save: an imputer with model={self.model!r} combines several models per column "
                              "and may hold scikit-learn's IterativeImputer, which only pickles; save an Imputer of "
                              f"one model instead (its choices per column were {sorted(set(self.choice_))})")
        folder = self.model_.save(folder)
        write_json(folder / TRANSFORM, self.tables_.config())
        names = getattr(self, "feature_names_in_", None)
        fitted = {"params": self.get_params(), "feature_names_in": None if names is None else names.tolist(),
                  "validation_scores": list(self.validation_scores_.items())}
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
    model, tables = load(folder, device), load_transform(folder)
    if not isinstance(tables, TableSchema):
        raise ConfigError(f"{folder} holds a model of sequences; an Imputer fills tables")
    saved = json.loads((folder / IMPUTER).read_text()) if (folder / IMPUTER).is_file() else {}
    known = Imputer().get_params()  # a folder saved by an older version may name options since removed
    params = {k: v for k, v in saved.get("params", {"model": model.name}).items() if k in known}
    imputer = Imputer(**{**params, "device": device})
    imputer.model_, imputer.tables_ = model, tables
    imputer.models_ = {imputer.model: model}
    imputer.choice_ = pd.Series(dict.fromkeys(tables.modality_columns_, imputer.model), dtype=object)
    imputer.validation_scores_ = pd.Series(dict(saved.get("validation_scores", [])), dtype=float)
    imputer.validation_score_ = float(imputer.validation_scores_.mean()) if len(imputer.validation_scores_) else math.nan
    imputer.n_features_in_ = len(tables.columns_)
    names = saved.get("feature_names_in", tables.columns_)
    if names is not None:
        imputer.feature_names_in_ = np.asarray(names, dtype=object)
    return imputer
