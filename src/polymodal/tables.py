"""Tables as modalities: each column its own modality, or named groups of columns.

:class:`TableSchema` is fitted on a training table (a pandas DataFrame or a 2-D array,
with NaN for missing cells). Numeric columns are min-max scaled to
[0, 1] using their *observed* training values and get the likelihood ``numeric`` (by
default a Gaussian of scale 0.1: a squared error, as in the VSAE paper); categorical columns (pandas
``category``/``object``/``bool`` dtypes, or those named in ``categorical``) get a
Categorical likelihood over the categories seen in training. ``transform`` turns a table
into a :class:`~polymodal.Batch`, ``inverse_transform`` turns a batch back into a table in
the original units and categories.

Documented behaviour for degenerate input: a column with no observed value in the training
table raises :class:`~polymodal.DataError` (nothing can be learned about it, not even its
scale); rows with every cell missing are allowed (a model imputes them from the prior).
A numeric column with a single observed value is scaled by 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .data import Batch, DataError
from .likelihoods import Gaussian, Likelihood, make_likelihood
from .modalities import Modality, Schema


def _frame(table: Any) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    array = np.asarray(table)
    if array.ndim != 2:
        raise DataError(f"expected a table of shape (rows, columns), got shape {array.shape}")
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


class TableSchema:
    """The modality schema of a table, with scaling and category codes fitted on training data.

    ``groups`` maps a modality name to a list of numeric columns that form one vector
    modality; every other column is a modality of its own, named after the column.
    """

    def __init__(
        self,
        categorical: Sequence[str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        numeric: str | dict | Likelihood | None = None,
    ):
        self.categorical = categorical
        self.groups = groups
        self.numeric = numeric

    def fit(self, table: Any) -> TableSchema:
        frame = _frame(table)
        if len(frame) == 0:
            raise DataError("empty table: no rows")
        self.columns_ = list(frame.columns)
        unknown = sorted(set(self.categorical or ()) - set(map(str, self.columns_)))
        if unknown:
            raise DataError(f"categorical columns {unknown} are not in the table; it has {self.columns_}")
        empty = [c for c in self.columns_ if frame[c].isna().all()]
        if empty:
            raise DataError(f"columns {empty} have no observed value in the training table; drop them or give data")
        self.categories_: dict[str, list] = {}
        self.min_: dict[str, float] = {}
        self.scale_: dict[str, float] = {}
        for c in self.columns_:
            series = frame[c]
            is_categorical = str(c) in set(self.categorical or ()) if self.categorical is not None else (
                isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object or series.dtype == bool
            )
            if is_categorical:
                self.categories_[c] = sorted(series.dropna().unique().tolist(), key=str)
            else:
                values = pd.to_numeric(series, errors="raise").astype(float)
                low, high = values.min(), values.max()
                self.min_[c], self.scale_[c] = float(low), float(high - low) if high > low else 1.0
        grouped = {c for cols in (self.groups or {}).values() for c in cols}
        for name, cols in (self.groups or {}).items():
            bad = [c for c in cols if c not in self.min_]
            if bad:
                raise DataError(f"group {name!r}: columns {bad} are not numeric columns of the table")
        self.modality_columns_: dict[str, list] = {name: list(cols) for name, cols in (self.groups or {}).items()}
        for c in self.columns_:
            if c not in grouped:
                self.modality_columns_[str(c)] = [c]
        numeric = Gaussian(scale=0.1) if self.numeric is None else make_likelihood(self.numeric)
        modalities = []
        for name, cols in self.modality_columns_.items():
            if cols[0] in self.categories_:
                k = max(len(self.categories_[cols[0]]), 2)
                modalities.append(Modality(name, (), "categorical", num_classes=k))
            else:
                shape = (len(cols),) if name in (self.groups or {}) else ()
                modalities.append(Modality(name, shape, numeric))
        self.schema_ = Schema(modalities)
        return self

    def transform(self, table: Any) -> Batch:
        """The table as a batch: scaled numeric values, category codes, NaN as unobserved."""
        frame = _frame(table)
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise DataError(f"the table lacks columns {missing} that the schema was fitted on")
        data = {}
        for name, cols in self.modality_columns_.items():
            if cols[0] in self.categories_:
                codes = {v: i for i, v in enumerate(self.categories_[cols[0]])}
                column = frame[cols[0]]
                unseen = sorted({v for v in column.dropna().unique() if v not in codes}, key=str)
                if unseen:
                    raise DataError(f"column {cols[0]!r}: categories {unseen[:5]} were not seen in training")
                data[name] = column.map(codes).to_numpy(dtype=float, na_value=np.nan)
            else:
                block = np.stack([
                    (pd.to_numeric(frame[c], errors="raise").to_numpy(dtype=float, na_value=np.nan) - self.min_[c])
                    / self.scale_[c]
                    for c in cols
                ], 1)
                data[name] = block if name in (self.groups or {}) else block[:, 0]
        return Batch.from_data(self.schema_, data)

    def fit_transform(self, table: Any) -> Batch:
        return self.fit(table).transform(table)

    def inverse_transform(self, batch: Batch, nan: bool = False) -> pd.DataFrame:
        """A table in the original units and categories (NaN where unobserved if ``nan``)."""
        arrays = batch.numpy(nan=nan)
        out = {}
        for name, cols in self.modality_columns_.items():
            values = arrays[name].reshape(len(batch), -1)
            for j, c in enumerate(cols):
                if c in self.categories_:
                    cats = self.categories_[c]
                    out[c] = [cats[int(v)] if np.isfinite(v) else np.nan for v in values[:, j]]
                else:
                    out[c] = values[:, j] * self.scale_[c] + self.min_[c]
        return pd.DataFrame(out, columns=self.columns_)
