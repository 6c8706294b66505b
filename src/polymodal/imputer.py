"""A scikit-learn imputer backed by a polymodal model.

:class:`Imputer` follows the estimator contract (``get_params`` / ``set_params``, ``clone``,
pipelines, ``fit`` / ``transform`` with NaN for missing cells): ``fit`` learns a model from
the incomplete table alone (no complete rows needed), ``transform`` fills every NaN cell
with the model's importance-sampled estimate E[x_u | x_o] and returns observed cells
unchanged. Each column is its own modality (see :class:`~polymodal.TableSchema`), so
masking is per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .config import ConfigError
from .models import MODELS
from .tables import TableSchema, _frame
from .training import Trainer


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
    columns in their categories) and an array otherwise.
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
        if self.model not in MODELS:
            raise ConfigError(f"Imputer: model must be one of {sorted(MODELS)}, got {self.model!r}")
        if not 0 <= self.validation < 1:
            raise ConfigError(f"Imputer: validation must be a fraction in [0, 1), got {self.validation}")
        frame = _frame(X)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.tables_ = TableSchema(categorical=self.categorical, groups=self.groups).fit(frame)
        batch = self.tables_.transform(frame)
        torch.manual_seed(self.random_state)
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
        frame = _frame(X)
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(f"Imputer: X has {frame.shape[1]} columns; the imputer was fitted on {self.n_features_in_}")
        if not isinstance(X, pd.DataFrame):
            frame.columns = self.tables_.columns_
        filled = self.tables_.inverse_transform(self.model_.impute(self.tables_.transform(frame), samples=self.samples))
        out = frame.copy()
        for c in self.tables_.columns_:
            holes = frame[c].isna().to_numpy()
            if holes.any():
                out.loc[holes, c] = filled[c].to_numpy()[holes]
        return out if isinstance(X, pd.DataFrame) else out.to_numpy()

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.asarray([str(c) for c in self.tables_.columns_], dtype=object)
