"""Tables as modalities: each column its own modality, or named groups of columns.

:class:`TableSchema` is fitted on a training table (a pandas DataFrame or a 2-D array,
with NaN for missing cells). Numeric columns are min-max scaled to
[0, 1] using their *observed* training values and get the likelihood ``numeric`` (by
default a Gaussian of scale 0.1: a squared error, as in the VSAE paper); categorical columns
get a Categorical likelihood over the categories seen in training. ``transform`` turns a
table into a :class:`~polymodal.Batch`, ``inverse_transform`` turns a batch back into a table
in the original units, categories and dtypes.

The categories of a column are those observed in training and, for a ``category`` dtype,
every category it declares (so a level that the training rows happen to miss is still known).

Missing cells are those pandas reads as missing (NaN, ``None``, ``pd.NA``, ``NaT``) and the
cells equal to one of ``na_values``, the markers the user names (none by default). A category
that looks like a marker (``"None"``, ``"NA"``, ``"null"``, ...) is kept, with a warning that
names the column and the value: R's ``MASS::survey`` has the exercise level ``"None"``.

Which columns are categorical: those named in ``categorical``, and those whose dtype says so:
``category``, ``bool`` / ``boolean``, and text (``object``, and pandas 3's ``str`` /
``string``). An ``object`` column that holds only numbers is numeric. Numeric dtypes,
nullable ``Int64`` / ``Float64`` included, are numeric. An integer column, one of an integer
dtype or a float column whose observed training values are all whole numbers (pandas reads
an integer column with holes as float), comes back from ``inverse_transform`` rounded, in
its dtype, unless ``round_integers=False`` (the :class:`~polymodal.Imputer`'s default). A
categorical column with one category is filled with it (its modality has a second class that
no cell has: a categorical likelihood needs two).

Documented behaviour for degenerate input, each a :class:`~polymodal.DataError` naming the
column: a column with no observed value in the training table (nothing can be learned about
it, not even its scale); a text column that mixes numbers with other text, such as a ``"?"``
marking missing cells (name it in ``na_values``, or name the column in ``categorical``);
infinite values; date or time columns, and text columns of ISO dates such as
``"1973-05-01"`` (convert them to numbers such as days since the first date, or drop them;
a text column named in ``categorical`` is kept as categories). Rows with every cell missing
are allowed (a model imputes them from the prior). A numeric column with a single observed
value is scaled by 1.

:class:`SequenceSchema` does the same for sequences in long format (one row per sequence
``id`` and ``time`` step): every value column becomes a sequential modality, scaled and
coded by a :class:`TableSchema` fitted on the rows.

Both are saved with a model as JSON (:meth:`TableSchema.config`, :func:`transform_from_config`),
so a saved model reads and writes new files in the units and categories it was trained on.
"""

from __future__ import annotations

import numbers
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from .data import Batch, DataError
from .likelihoods import Gaussian, Likelihood, make_likelihood
from .modalities import Modality, Schema

DATES = ("datetime", "datetime64", "date", "time", "timedelta", "timedelta64", "period")
# Text that reads as a date: ISO 8601 days, optionally with a time of day and a time zone.
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?")
# Text that other tools write for a missing cell (pandas' default na_values and a few more):
# a category spelled so is kept, with a warning.
LOOKS_MISSING = frozenset({
    "", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>", "n/a", "na", "nan",
    "null", "none", "nil", "missing", "?",
})


def repeated(names: Iterable[Any]) -> list:
    """The names that appear more than once, in order of first appearance."""
    counts = Counter(names)
    return [name for name, count in counts.items() if count > 1]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _parses(value: Any) -> bool:
    """Whether text ``value`` reads as a number."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _iso_dates(observed: pd.Series) -> bool:
    """Whether every observed cell is text that reads as an ISO date (the first cell decides cheaply)."""
    if not len(observed) or not isinstance(observed.iloc[0], str) or not ISO_DATE.fullmatch(observed.iloc[0]):
        return False
    if not observed.map(lambda v: isinstance(v, str) and ISO_DATE.fullmatch(v) is not None).all():
        return False
    try:  # utc: cells of different time zones are dates too
        return bool(pd.to_datetime(observed, format="ISO8601", errors="coerce", utc=True).notna().all())
    except (ValueError, OverflowError):
        return False


def _is_categorical(column: Any, series: pd.Series, named: set[str]) -> bool:
    """Whether ``column`` is categorical (see the module docstring); refuses dates and text
    columns that mix numbers with other text, naming the column."""
    dtype = series.dtype
    observed = series.dropna()
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype) or isinstance(
        dtype, pd.PeriodDtype
    ) or pd.api.types.infer_dtype(observed, skipna=True) in DATES:
        raise DataError(
            f"column {column!r}: dates and times ({dtype}) are not supported; convert them to numbers "
            "(such as days since a start date) or to text categories"
        )
    if str(column) in named or isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    if _iso_dates(observed):
        raise DataError(
            f"column {column!r} holds dates such as {observed.iloc[0]!r}, which polymodal does not model: convert "
            "them to numbers (such as days since the first date) or drop the column; naming it in categorical=[...] "
            "makes each date a category"
        )
    if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
        return False
    odd = observed[~observed.map(lambda v: isinstance(v, (str, bool, np.bool_, numbers.Real))).to_numpy(dtype=bool)]
    if len(odd):
        value = odd.iloc[0]
        raise DataError(f"column {column!r}: cells must be numbers, text or booleans, got {value!r} ({type(value).__name__})")
    numeric = observed.map(_is_number).to_numpy(dtype=bool)
    text_numbers = observed.map(lambda v: isinstance(v, str) and _parses(v)).to_numpy(dtype=bool)
    other = ~(numeric | text_numbers)
    if not other.any():
        return not numeric.any()  # numbers (and numeric text) are numeric; numeric text alone is text
    counted = numeric | text_numbers
    if counted.any():  # text that looks like a marker, else the fewer kind, is the odd one out
        marks = observed[other].map(lambda v: str(v).strip().lower() in LOOKS_MISSING).to_numpy(dtype=bool).all()
        stray = counted if counted.sum() < other.sum() and not marks else other
        values = list(dict.fromkeys(observed[stray].tolist()))[:5]
        rows = observed.index[stray][:5].tolist()
        found = f"{int(stray.sum())} of its {len(observed)} observed cells are {'numbers' if stray is counted else 'text'}" \
                f" {values} (rows {rows})"
        if stray is counted:
            categories = sorted(map(str, dict.fromkeys(observed[other].tolist())))[:5]
            raise DataError(f"column {column!r} holds text categories such as {categories}, but {found}: correct or "
                            "empty those cells, or name the column in categorical=[...] to keep them as categories")
        raise DataError(f"column {column!r} holds numbers, but {found}: if they mark missing cells, name them as "
                        f"missing-value markers (na_values={[str(v) for v in values]}; on the command line --na-values "
                        f"{','.join(map(str, values))}), or name the column in categorical=[...] to treat every value "
                        "as a category")
    return True


def _numbers(column: Any, series: pd.Series) -> np.ndarray:
    """A numeric column as float64 with NaN where missing; refuses text and infinite values."""
    parsed = pd.to_numeric(series, errors="coerce")
    bad = parsed.isna() & series.notna()
    if bad.any():
        raise DataError(f"column {column!r} is numeric in the schema, got {list(dict.fromkeys(series[bad].tolist()))[:5]}")
    values = parsed.to_numpy(dtype=float, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        rows = series.index[infinite][:5].tolist()
        raise DataError(f"column {column!r}: infinite values in rows {rows}; use NaN for missing cells")
    return values


def _integer_dtype(dtype: Any) -> bool:
    return pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _restore(values: list | np.ndarray, dtype: Any, whole: bool = False) -> pd.Series:
    """``values`` in a column's original ``dtype``: rounded if ``whole`` (an integer column),
    NaN kept where the dtype cannot hold it (a numpy int or bool column then stays float or object);
    an integer column's values that are not whole stay floats (``Float64`` for a nullable ``Int64``)."""
    series = pd.Series(values, dtype=float if isinstance(values, np.ndarray) else object)
    if whole:
        series = series.round()
    if _integer_dtype(dtype) and (series.dropna() % 1 != 0).any():
        return series.astype("Float64") if isinstance(dtype, pd.api.extensions.ExtensionDtype) else series
    if _integer_dtype(dtype):
        info = np.iinfo(dtype.numpy_dtype if isinstance(dtype, pd.api.extensions.ExtensionDtype) else dtype)
        series = series.clip(info.min, info.max)  # an imputation below 0 must not wrap round in a uint
    holds_missing = isinstance(dtype, pd.api.extensions.ExtensionDtype) or dtype.kind in "fO"
    if holds_missing or not series.isna().any():
        series = series.astype(dtype)
    return series


Transform = Union["TableSchema", "SequenceSchema"]


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
    ``na_values`` lists the values that mark missing cells besides NaN (e.g. ``["?", -999]``).
    ``round_integers``: integer columns (see the module's docstring) come back rounded, in their
    dtype; with ``False`` they keep the model's estimate, as floats where it is not whole.
    """

    def __init__(
        self,
        categorical: Sequence[str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        numeric: str | dict | Likelihood | None = None,
        na_values: Sequence[Any] = (),
        round_integers: bool = True,
    ):
        self.categorical = categorical
        self.groups = groups
        self.numeric = numeric
        self.na_values = na_values
        self.round_integers = round_integers

    def unmark(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the cells equal to one of ``na_values`` missing."""
        if isinstance(self.na_values, (str, bytes)):
            raise DataError(f"na_values must be a list of markers, got the string {self.na_values!r}")
        if not len(self.na_values):
            return frame
        return frame.mask(frame.isin(list(self.na_values)))

    def fit(self, table: Any) -> TableSchema:
        if isinstance(self.categorical, str):
            raise DataError(f"categorical must be a list of column names, got the string {self.categorical!r}")
        bare = [name for name, cols in (self.groups or {}).items() if isinstance(cols, str)]
        if bare:
            raise DataError(f"groups {bare}: each group must be a list of column names, not a string")
        if not isinstance(self.round_integers, (bool, np.bool_)):
            raise DataError(f"round_integers must be True or False, got {self.round_integers!r}")
        frame = self.unmark(_frame(table))
        if len(frame) == 0:
            raise DataError("empty table: no rows")
        if frame.shape[1] == 0:
            raise DataError("the table has no columns to model")
        self.columns_ = list(frame.columns)
        twice = repeated(map(str, self.columns_))
        if twice:
            raise DataError(f"columns {twice} appear more than once; each column needs its own name")
        unknown = sorted(set(self.categorical or ()) - set(map(str, self.columns_)))
        if unknown:
            raise DataError(f"categorical columns {unknown} are not in the table; it has {self.columns_}")
        empty = [c for c in self.columns_ if frame[c].isna().all()]
        if empty:
            raise DataError(f"columns {empty} have no observed value in the training table; drop them or give data")
        self.categories_: dict[str, list] = {}
        self.min_: dict[str, float] = {}
        self.scale_: dict[str, float] = {}
        self.integers_: list = []
        self.dtypes_ = {c: frame[c].dtype for c in self.columns_}
        named = set(map(str, self.categorical or ()))
        for c in self.columns_:
            series = frame[c]
            if _is_categorical(c, series, named):
                declared = isinstance(series.dtype, pd.CategoricalDtype)
                values = series.cat.categories if declared else series.dropna().unique()
                self.categories_[c] = sorted(values.tolist(), key=str)
                marks = [v for v in self.categories_[c] if isinstance(v, str) and v.strip().lower() in LOOKS_MISSING]
                if marks:
                    warnings.warn(f"column {c!r}: the categories {marks} are kept as data, not as missing cells; if "
                                  f"they mark missing cells, name them in na_values=[...] (on the command line: "
                                  f"--na-values {','.join(marks)})", stacklevel=2)
            else:
                values = _numbers(c, series)
                low, high = np.nanmin(values), np.nanmax(values)
                self.min_[c], self.scale_[c] = float(low), float(high - low) if high > low else 1.0
                if _integer_dtype(series.dtype) or bool((np.nan_to_num(values) % 1 == 0).all()):
                    self.integers_.append(c)
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
        self._check_fitted()
        frame = self.unmark(_frame(table))
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
                block = np.stack([(_numbers(c, frame[c]) - self.min_[c]) / self.scale_[c] for c in cols], 1)
                data[name] = block if name in (self.groups or {}) else block[:, 0]
        return Batch.from_data(self.schema_, data)

    def _check_fitted(self) -> None:
        if not hasattr(self, "schema_"):
            raise NotFittedError("this TableSchema is not fitted yet: call fit(table) first")

    def fit_transform(self, table: Any) -> Batch:
        return self.fit(table).transform(table)

    def fill(self, frame: pd.DataFrame, imputed: Batch) -> pd.DataFrame:
        """A copy of ``frame`` whose missing cells in the schema's columns hold the values of
        ``imputed`` (a batch of the same rows); every other cell is kept exactly as it was,
        as are the index and the columns the schema does not model."""
        filled = self.inverse_transform(imputed)
        filled.index = frame.index
        out, unmarked = frame.copy(), self.unmark(frame)
        for c in self.columns_:
            holes = unmarked[c].isna()
            if holes.any():  # where() keeps the column's dtype (nullable Int64, boolean, category)
                column = frame[c]
                if _integer_dtype(column.dtype) and not _integer_dtype(filled[c].dtype):  # estimates not whole
                    column = column.astype(filled[c].dtype)
                out[c] = column.where(~holes, filled[c])
        return out

    def config(self) -> dict[str, Any]:
        """The fitted schema as JSON-ready data; :func:`transform_from_config` rebuilds it.
        Pairs rather than dicts keep column names and categories that are not strings."""
        numeric = None if self.numeric is None else make_likelihood(self.numeric).config()
        return {
            "kind": "table", "categorical": self.categorical, "groups": self.groups, "numeric": numeric,
            "na_values": list(self.na_values), "round_integers": self.round_integers, "columns": self.columns_,
            "integers": self.integers_,
            "categories": list(self.categories_.items()),
            "min": list(self.min_.items()), "scale": list(self.scale_.items()),
            "modalities": list(self.modality_columns_.items()), "schema": self.schema_.config(),
            "dtypes": [(c, str(d)) for c, d in self.dtypes_.items()],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TableSchema:
        tables = cls(config["categorical"], config["groups"], config["numeric"], config.get("na_values", ()),
                     bool(config.get("round_integers", True)))
        tables.columns_ = list(config["columns"])
        tables.categories_ = {c: list(v) for c, v in config["categories"]}
        tables.min_ = dict(config["min"])
        tables.scale_ = dict(config["scale"])
        tables.modality_columns_ = {name: list(cols) for name, cols in config["modalities"]}
        tables.schema_ = Schema.from_config(config["schema"])
        tables.dtypes_ = {c: pd.CategoricalDtype(tables.categories_[c]) if d == "category" else pd.api.types.pandas_dtype(d)
                          for c, d in config["dtypes"]}
        tables.integers_ = list(config["integers"]) if "integers" in config else [  # saved before "integers"
            c for c in tables.min_ if _integer_dtype(tables.dtypes_[c])]
        tables._check_saved()
        return tables

    def _check_saved(self) -> None:
        """Refuse a saved schema whose values cannot be a fitted one (a damaged or hand-edited
        file): each fault is a :class:`~polymodal.DataError` naming the column and the value."""
        columns, categorical = self.columns_, self.categories_
        numeric = [c for c in columns if c not in categorical]
        if len(set(map(str, columns))) != len(columns):
            raise DataError(f"columns {columns} repeat a name")
        if not set(categorical) <= set(columns):
            unknown = sorted(set(categorical) - set(columns), key=str)
            raise DataError(f"categories name columns {unknown} that are not in {columns}")
        for c, categories in categorical.items():
            if not categories or len(set(map(str, categories))) != len(categories):
                raise DataError(f"column {c!r}: categories {categories} must be one or more distinct values")
        for name, values in (("min", self.min_), ("scale", self.scale_)):
            if set(values) != set(numeric):
                raise DataError(f"{name} is given for columns {list(values)}; the numeric columns are {numeric}")
        for c in numeric:
            low, scale = self.min_[c], self.scale_[c]
            if not (_is_number(low) and np.isfinite(low) and _is_number(scale) and np.isfinite(scale) and scale > 0):
                raise DataError(f"column {c!r}: min {low!r} and scale {scale!r} must be finite numbers, the scale > 0")
        listed = [c for cols in self.modality_columns_.values() for c in cols]
        if sorted(map(str, listed)) != sorted(map(str, columns)) or len(listed) != len(columns):
            raise DataError(f"the modalities {self.modality_columns_} must hold each of the columns {columns} once")
        if list(self.modality_columns_) != self.schema_.names:
            raise DataError(f"the modalities {list(self.modality_columns_)} differ from the schema's {self.schema_.names}")
        for name, cols in self.modality_columns_.items():
            m = self.schema_[name]
            if cols[0] in categorical:
                fits = len(cols) == 1 and m.categorical and m.num_classes == max(len(categorical[cols[0]]), 2)
                expected = f"a categorical modality of {max(len(categorical[cols[0]]), 2)} classes"
            else:
                shape = (len(cols),) if name in (self.groups or {}) else ()
                fits = not m.categorical and m.shape == shape and all(c not in categorical for c in cols)
                expected = f"a numeric modality of shape {shape}"
            if not fits:
                raise DataError(f"modality {name!r} of columns {cols} must be {expected}, got {m.config()}")
        if set(self.dtypes_) != set(columns):
            raise DataError(f"dtypes are given for columns {list(self.dtypes_)}, not for {columns}")

    def inverse_transform(self, batch: Batch, nan: bool = False) -> pd.DataFrame:
        """A table in the original units, categories and dtypes (NaN where unobserved if ``nan``)."""
        self._check_fitted()
        if not isinstance(batch, Batch) or batch.schema != self.schema_:
            got = batch.schema.names if isinstance(batch, Batch) else type(batch).__name__
            raise DataError(f"inverse_transform needs a batch of this table's schema {self.schema_.names}, got {got}")
        arrays = batch.numpy(nan=nan)
        out = {}
        for name, cols in self.modality_columns_.items():
            values = arrays[name].reshape(len(batch), -1)
            for j, c in enumerate(cols):
                if c in self.categories_:
                    cats = self.categories_[c]  # min(): a one-class column's phantom second class is that one class
                    out[c] = _restore([cats[min(int(v), len(cats) - 1)] if np.isfinite(v) else np.nan
                                       for v in values[:, j]], self.dtypes_[c])
                else:
                    out[c] = _restore(values[:, j] * self.scale_[c] + self.min_[c], self.dtypes_[c],
                                      self.round_integers and c in self.integers_)
        return pd.DataFrame(out, columns=self.columns_)


class SequenceSchema:
    """The modality schema of sequences in long format: one row per ``id`` and ``time``.

    Every column other than ``id`` and ``time`` is a sequential modality (``groups`` make
    vector modalities, ``categorical`` and ``na_values`` as in :class:`TableSchema`). ``transform`` lays the
    sequences on the grid of every time value in the table (every integer from the first to
    the last, for an integer ``time`` column): a step without a row is missing,
    and a sequence shorter than the others is padded with unobserved steps. ``fill`` writes
    back one row per step from each sequence's first to its last time.
    """

    def __init__(
        self,
        id: str = "id",
        time: str = "time",
        categorical: Sequence[str] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        numeric: str | dict | Likelihood | None = None,
        na_values: Sequence[Any] = (),
    ):
        self.id = id
        self.time = time
        self.categorical = categorical
        self.groups = groups
        self.numeric = numeric
        self.na_values = na_values

    def _check(self, frame: pd.DataFrame) -> None:
        absent = [c for c in (self.id, self.time) if c not in frame.columns]
        if absent:
            raise DataError(f"long-format sequences need columns {absent}; the table has {list(frame.columns)}")
        repeated = frame.duplicated([self.id, self.time])
        if repeated.any():
            at, when = frame.loc[repeated, self.id].tolist()[0], frame.loc[repeated, self.time].tolist()[0]
            raise DataError(f"{self.id} {at!r} has more than one row at {self.time} {when!r}")

    def fit(self, frame: pd.DataFrame) -> SequenceSchema:
        self._check(frame)
        rows = frame.drop(columns=[self.id, self.time])
        self.tables_ = TableSchema(self.categorical, self.groups, self.numeric, self.na_values).fit(rows)
        self.columns_ = self.tables_.columns_
        self.schema_ = Schema(Modality.from_config({**m, "sequential": True}) for m in self.tables_.schema_.config())
        return self

    def _grid(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
        """``frame`` reindexed on every (id, time) pair, ids in order of appearance, times sorted."""
        self._check(frame)
        ids, times = pd.unique(frame[self.id]), np.sort(pd.unique(frame[self.time]))
        if pd.api.types.is_integer_dtype(frame[self.time].dtype):  # integer steps: every step between, even if no row has it
            times = np.arange(times[0], times[-1] + 1, dtype=times.dtype)
        index = pd.MultiIndex.from_product([ids, times], names=[self.id, self.time])
        return frame.set_index([self.id, self.time]).reindex(index), len(ids), len(times)

    def transform(self, frame: pd.DataFrame) -> Batch:
        """Sequences as a batch ``[N, T, ...]``: scaled values, category codes, absent or NaN
        entries unobserved."""
        grid, n, t = self._grid(frame)
        missing = [c for c in self.columns_ if c not in grid.columns]
        if missing:
            raise DataError(f"the table lacks columns {missing} that the schema was fitted on")
        rows = self.tables_.transform(grid[self.columns_].reset_index(drop=True))
        return Batch(
            self.schema_,
            {k: v.reshape(n, t, *v.shape[1:]) for k, v in rows.values.items()},
            {k: m.reshape(n, t, *m.shape[1:]) for k, m in rows.observed.items()},
        )

    def fit_transform(self, frame: pd.DataFrame) -> Batch:
        return self.fit(frame).transform(frame)

    def _span(self, frame: pd.DataFrame, grid: pd.DataFrame) -> np.ndarray:
        """Which rows of ``grid`` lie between their sequence's first and last row in ``frame``."""
        n = frame[self.id].nunique()
        present = frame.assign(_row=1).set_index([self.id, self.time])["_row"].reindex(grid.index).notna().to_numpy()
        steps = present.reshape(n, -1)
        return ((np.cumsum(steps, 1) > 0) & (np.cumsum(steps[:, ::-1], 1)[:, ::-1] > 0)).reshape(-1)

    def inverse_transform(self, batch: Batch, nan: bool = False, like: pd.DataFrame | None = None) -> pd.DataFrame:
        """The sequences as a long table: every step, ``id`` and ``time`` numbered from 0; or,
        given ``like`` (the table the batch was made from), with its ids and times and only
        the steps from each sequence's first to its last time."""
        n, t = batch.observed[self.schema_.names[0]].shape[:2]
        rows = Batch(
            self.tables_.schema_,
            {k: v.reshape(n * t, *v.shape[2:]) for k, v in batch.values.items()},
            {k: m.reshape(n * t, *m.shape[2:]) for k, m in batch.observed.items()},
        )
        values = self.tables_.inverse_transform(rows, nan=nan)
        if like is None:
            steps = pd.DataFrame({self.id: np.repeat(np.arange(n), t), self.time: np.tile(np.arange(t), n)})
            return pd.concat([steps, values], axis=1)
        grid, _, _ = self._grid(like)
        keep = self._span(like, grid)
        return pd.concat([grid.index.to_frame(index=False), values], axis=1)[keep].reset_index(drop=True)

    def fill(self, frame: pd.DataFrame, imputed: Batch) -> pd.DataFrame:
        """The long table with a row for every step from each sequence's first to its last
        time; cells of ``frame`` are kept exactly, the others hold ``imputed`` (the batch of
        ``transform(frame)``). Rows come sorted by id (in order of appearance) and time."""
        grid, _, _ = self._grid(self.tables_.unmark(frame))
        values = self.inverse_transform(imputed)
        out = grid.reset_index()
        for c in self.columns_:
            holes = out[c].isna().to_numpy()
            if holes.any():
                out.loc[holes, c] = values[c].to_numpy()[holes]
        out = out[self._span(frame, grid)].reset_index(drop=True)
        return out[[c for c in frame.columns]]

    def config(self) -> dict[str, Any]:
        return {"kind": "sequence", "id": self.id, "time": self.time, "tables": self.tables_.config()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SequenceSchema:
        tables = TableSchema.from_config(config["tables"])
        sequences = cls(config["id"], config["time"], tables.categorical, tables.groups, tables.numeric, tables.na_values)
        sequences.tables_, sequences.columns_ = tables, tables.columns_
        sequences.schema_ = Schema(Modality.from_config({**m, "sequential": True}) for m in tables.schema_.config())
        return sequences


def transform_from_config(config: Mapping[str, Any]) -> Transform:
    """The :class:`TableSchema` or :class:`SequenceSchema` saved as ``config``."""
    kinds = {"table": TableSchema, "sequence": SequenceSchema}
    if config.get("kind") not in kinds:
        raise DataError(f"unknown data transform kind {config.get('kind')!r}; expected one of {sorted(kinds)}")
    return kinds[config["kind"]].from_config(config)
