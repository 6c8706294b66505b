"""Tables and sequences from files: CSV, Parquet and NPZ, read into pandas and written back.

* A table has one row per sample; empty cells or NaN are missing.
* Sequences in long format have one row per sequence ``id`` and ``time`` step; a step
  without a row is missing (see :class:`~polymodal.SequenceSchema`).
* An NPZ file holds one numeric array (any name) and, optionally, ``columns`` (its feature
  names): ``[N, F]`` is a table, ``[N, T, F]`` with NaN for missing entries is sequences
  (what PyPOTS uses); those are read as long format with ``id`` and ``time`` numbered from 0,
  and written back as ``[N, T, F]`` under the same name.

Parquet needs ``pyarrow`` (``pip install polymodal[parquet]``). Several files are joined on
their ``id`` column (and ``time`` for sequences) by :func:`read_files`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from zipfile import BadZipFile

import numpy as np
import pandas as pd

from ..data import DataError
from ..files import atomic_write, check_writable

FORMATS = (".csv", ".parquet", ".npz")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unknown file type {suffix or '(none)'!r}; polymodal reads and writes {list(FORMATS)}")
    return suffix


def _pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DataError(f"{path}: Parquet files need pyarrow; install it with `pip install polymodal[parquet]`") from None


def _npz_array(path: Path) -> tuple[str, np.ndarray, list | None]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = [k for k in npz.files if k != "columns"]
            if len(names) != 1:
                raise DataError(f"{path}: expected one data array (and optionally 'columns'), found arrays {npz.files}")
            array = npz[names[0]]
            columns = npz["columns"].tolist() if "columns" in npz.files else None
    except (BadZipFile, EOFError, ValueError, AttributeError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: not an NPZ file of numeric arrays ({' '.join(str(error).split())})") from None
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: array {names[0]!r} must be numeric [N, F] or [N, T, F], got {array.dtype} {array.shape}")
    if columns is not None and len(columns) != array.shape[-1]:
        raise DataError(f"{path}: 'columns' names {len(columns)} features, the array has {array.shape[-1]}")
    return names[0], array, columns


def read_frame(path: str | Path, id: str = "id", time: str = "time") -> pd.DataFrame:
    """One file as a DataFrame: a table, or sequences in long format (``id``, ``time``, values)."""
    path = Path(path)
    kind = _format(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if kind == ".csv":  # round_trip: pandas 3's default parser can miss the last bit, and observed cells stay exact
        try:
            return pd.read_csv(path, float_precision="round_trip")
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty; a CSV needs a header row of column names") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not a readable CSV file: {' '.join(str(error).split())}") from None
    if kind == ".parquet":
        _pyarrow(path)
        import pyarrow

        try:
            return pd.read_parquet(path)
        except (pyarrow.ArrowException, OSError) as error:
            raise DataError(f"{path}: not a readable Parquet file: {' '.join(str(error).split())}") from None
    _, array, columns = _npz_array(path)
    columns = columns or [f"x{i}" for i in range(array.shape[-1])]
    if array.ndim == 2:
        return pd.DataFrame(array, columns=columns)
    n, t, f = array.shape
    steps = pd.DataFrame({id: np.repeat(np.arange(n), t), time: np.tile(np.arange(t), n)})
    return pd.concat([steps, pd.DataFrame(array.reshape(n * t, f), columns=columns)], axis=1)


def read_files(paths: str | Path | Sequence[str | Path], id: str = "id", time: str | None = None) -> pd.DataFrame:
    """One file, or several joined on ``id`` (and ``time``, for sequences): every row of every
    file is kept (an outer join), so a sample absent from a file has that file's columns missing."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise DataError("no data files given")
    keys = [id] if time is None else [id, time]
    frames = [read_frame(p, id, time or "time") for p in paths]
    if len(frames) == 1:
        return frames[0]
    seen: dict[str, Path] = {}
    for path, frame in zip(paths, frames):
        absent = [k for k in keys if k not in frame.columns]
        if absent:
            raise DataError(f"{path}: joining several files needs columns {absent}; it has {list(frame.columns)}")
        for c in frame.columns:
            if c not in keys and c in seen:
                raise DataError(f"column {c!r} is in both {seen[c]} and {path}; rename one")
            seen.setdefault(c, Path(path))
        if frame.duplicated(keys).any():
            raise DataError(f"{path}: {'/'.join(keys)} values repeat, so rows cannot be joined")
    joined = frames[0]
    for frame in frames[1:]:
        joined = joined.merge(frame, on=keys, how="outer", sort=False)
    return joined


@contextmanager
def about(path: str | Path | Sequence[str | Path]) -> Iterator[None]:
    """Name the file(s) ``path`` in a :class:`~polymodal.DataError` raised inside, unless it does already."""
    name = str(path) if isinstance(path, (str, Path)) else ", ".join(map(str, path))
    try:
        yield
    except DataError as error:
        if name in str(error):
            raise
        raise DataError(f"{name}: {error}") from None


def check_output(path: str | Path, option: str) -> Path:
    """Refuse, before any work, an output file of a type polymodal cannot write (or Parquet
    without pyarrow) or at a place it cannot write to; ``option`` names it in the error."""
    path = Path(path)
    try:
        kind = _format(path)
    except DataError as error:
        raise DataError(f"{option} {error}") from None
    if kind == ".parquet":
        _pyarrow(path)
    return check_writable(path, option)


def write_frame(frame: pd.DataFrame, path: str | Path, like: str | Path | None = None,
                sequence: tuple[str, str] | None = None) -> Path:
    """Write ``frame`` in the format of ``path``'s suffix, atomically. CSV keeps the columns
    (not the index), Parquet the index and dtypes. NPZ writes the array under the name it has
    in ``like`` (default ``data``): ``[N, F]``, or ``[N, T, F]`` when ``sequence`` names the
    id and time columns of a long-format ``frame``."""
    path = Path(path)
    kind = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".csv":
        atomic_write(path, lambda p: frame.to_csv(p, index=False))
    elif kind == ".parquet":
        _pyarrow(path)
        atomic_write(path, lambda p: frame.to_parquet(p))
    else:
        name = _npz_array(Path(like))[0] if like is not None and _format(Path(like)) == ".npz" else "data"
        values = frame.drop(columns=list(sequence)) if sequence else frame
        text = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c].dtype)]
        if text:
            raise DataError(f"{path}: NPZ holds numbers only, and columns {text} are not numeric; write CSV or Parquet")
        array = values.to_numpy(dtype=float, na_value=np.nan)
        if sequence:
            ids, times = frame[sequence[0]].nunique(), frame[sequence[1]].nunique()
            if ids * times != len(frame):
                raise DataError(f"{path}: sequences of different lengths cannot be one [N, T, F] array; write CSV or Parquet")
            array = array.reshape(ids, times, -1)

        def write(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(f, **{name: array, "columns": np.asarray([str(c) for c in values.columns])})

        atomic_write(path, write)
    return path


def sequence_file(path: str | Path) -> bool:
    """Whether ``path`` is an NPZ file of sequences ``[N, T, F]``."""
    path = Path(path)
    return path.suffix.lower() == ".npz" and path.is_file() and _npz_array(path)[1].ndim == 3
