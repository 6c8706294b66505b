"""A scikit-learn imputer backed by a polymodal model.

:class:`Imputer` follows the estimator contract (``get_params`` / ``set_params``, ``clone``,
pipelines, ``fit`` / ``transform`` with NaN for missing cells): ``fit`` learns a model from
the incomplete table alone (no complete rows needed), ``transform`` fills every NaN cell
with the model's importance-sampled estimate E[x_u | x_o] and returns observed cells
unchanged. Each column is its own modality (see :class:`~polymodal.TableSchema`), so
masking is per cell.

Input goes through scikit-learn's ``validate_data`` (sparse and complex input, 1-D arrays
and a changed number or names of features are refused there) and then through
:class:`~polymodal.TableSchema`, which names the column of any bad cell. ``random_state``
seeds a private random stream for ``fit`` and for each ``transform``: two transforms of the
same table give the same fill, and the caller's global torch stream is left as it was.
"""

from __future__ import annotations

import json
import numbers
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
from .data import concat
from .files import write_json
from .models import MODELS
from .models.dmm import DeepMarkovModel
from .persistence import TRANSFORM, load, load_transform
from .progress import chunked
from .tables import TableSchema, _frame
from .training import Trainer, resolve_device

# The models a table can be imputed with: those of static data.
TABLE_MODELS = sorted(name for name, cls in MODELS.items() if not issubclass(cls, DeepMarkovModel))

IMPUTER = "imputer.json"


class Imputer(TransformerMixin, BaseEstimator):
    """Fill the NaN cells of a table with a generative model trained on that incomplete table.

    ``model`` names a polymodal model for static data (``"miwae"``, the best deep imputer in
    ``benchmarks/tabular.py``; ``"vsae"``, ``"zerofill-vae"``, ``"mvae"``, ...), configured with
    ``model_options``. ``categorical`` and ``groups`` are passed to
    :class:`~polymodal.TableSchema`. A ``validation`` fraction of the rows is held out for
    early stopping with ``patience`` epochs; ``validation=0`` or ``patience=None`` trains
    all ``epochs`` on every row. ``samples`` importance samples estimate each imputation
    (0: decode the posterior mean).

    ``transform`` returns a DataFrame for a DataFrame (same index and columns, categorical
    columns in their categories) and an array otherwise; ``progress`` shows bars for training
    and for filling the table.

    ``save(folder)`` writes the fitted imputer as a model folder (config JSON, safetensors
    weights, the fitted table schema as JSON); :func:`load_imputer` reads it back.
    """

    def __init__(
        self,
        model: str = "miwae",
        model_options: Mapping[str, Any] | None = None,
        categorical: Sequence[str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        epochs: int = 500,
        batch_size: int = 64,
        lr: float = 1e-3,
        validation: float = 0.2,
        patience: int | None = 50,
        samples: int = 1000,
        random_state: int = 0,
        device: str = "cpu",
        progress: bool = False,
    ):
        self.model = model
        self.model_options = model_options
        self.categorical = categorical
        self.groups = groups
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation = validation
        self.patience = patience
        self.samples = samples
        self.random_state = random_state
        self.device = device
        self.progress = progress

    def fit(self, X: Any, y: Any = None) -> Imputer:
        if self.model not in TABLE_MODELS:
            why = f" ({self.model!r} models sequences, not tables)" if self.model in MODELS else ""
            raise ConfigError(f"Imputer: model must be one of {TABLE_MODELS}, got {self.model!r}{why}")
        if not 0 <= self.validation < 1:
            raise ConfigError(f"Imputer: validation must be a fraction in [0, 1), got {self.validation}")
        for name in ("samples", "random_state"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(f"Imputer: {name} must be an integer >= 0, got {value!r}")
        frame = self._table(X, reset=True)
        self.tables_ = TableSchema(categorical=self.categorical, groups=self.groups).fit(frame)
        batch = self.tables_.transform(frame)
        with self._random_stream():
            self.model_ = MODELS[self.model](batch.schema, **dict(self.model_options or {}))
            order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(self.random_state))
            held = int(self.validation * len(batch)) if self.patience is not None else 0
            trainer = Trainer(self.model_, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                              patience=self.patience if held else None, seed=self.random_state, device=self.device,
                              progress=self.progress)
            trainer.fit(batch.select(order[held:]), batch.select(order[:held]) if held else None)
        return self

    def transform(self, X: Any) -> pd.DataFrame | np.ndarray:
        check_is_fitted(self, "model_")
        frame = self._table(X, reset=False)
        if not isinstance(X, pd.DataFrame):
            frame.columns = self.tables_.columns_
        batch = self.tables_.transform(frame)
        with self._random_stream():
            parts = chunked(lambda rows: self.model_.impute(batch.select(rows), samples=self.samples), len(batch),
                            progress=self.progress, desc="impute")
        out = self.tables_.fill(frame, concat(parts).to("cpu"))
        return out if isinstance(X, pd.DataFrame) else out.to_numpy()

    def save(self, folder: str | Path) -> Path:
        """Write the fitted imputer to ``folder``; :func:`load_imputer` reads it back."""
        check_is_fitted(self, "model_")
        folder = self.model_.save(folder)
        write_json(folder / TRANSFORM, self.tables_.config())
        names = getattr(self, "feature_names_in_", None)
        fitted = {"params": self.get_params(), "feature_names_in": None if names is None else names.tolist()}
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
        """The torch random stream seeded with ``random_state``; the caller's is restored after."""
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.random_state)
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
    imputer = Imputer(**{**saved.get("params", {"model": model.name}), "device": device})
    imputer.model_, imputer.tables_ = model, tables
    imputer.n_features_in_ = len(tables.columns_)
    names = saved.get("feature_names_in", tables.columns_)
    if names is not None:
        imputer.feature_names_in_ = np.asarray(names, dtype=object)
    return imputer
