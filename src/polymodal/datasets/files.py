"""Tables and sequences from files: CSV, Parquet and NPZ, read into pandas and written back.

* A table has one row per sample. Missing cells are empty or ``NaN`` (``nan``) in CSV, null
  in Parquet, NaN in NPZ, and the cells equal to one of ``na_values``: text such as
  ``"None"`` or ``"NA"`` is data unless named there. Repeated column names are refused.
* A CSV column whose cells are all whole numbers (``41``, not ``41.0``) with some empty is
  read as pandas' nullable ``Int64``, so it is written back as whole numbers.
* Sequences in long format have one row per sequence ``id`` and ``time`` step; a step
  without a row is missing (see :class:`~polymodal.SequenceSchema`).
* An NPZ file holds one numeric array (any name) and, optionally, ``columns`` (its feature
  names): ``[N, F]`` is a table, ``[N, T, F]`` with NaN for missing entries is sequences
  (what PyPOTS uses); those are read as long format with ``id`` and ``time`` numbered from 0,
  and written back as ``[N, T, F]`` under the same name.

A table larger than memory is read ``rows`` rows at a time by :func:`read_chunks` and written
chunk by chunk by :class:`FrameWriter` (CSV and Parquet; an NPZ array is read and written whole).

Parquet needs ``pyarrow`` (``pip install polymodal[parquet]``). Several files are joined on
their ``id`` column (and ``time`` for sequences) by :func:`read_files`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from zipfile import BadZipFile

import numpy as np
import pandas as pd

from ..data import DataError
from ..files import atomic_path, atomic_write, check_writable
from ..tables import repeated

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
    if columns is not None:
        _unique(path, columns)
    return names[0], array, columns


def _unique(path: Path, columns: Sequence) -> None:
    twice = repeated(c for c in columns if c != "")  # pandas names blank headers apart: Unnamed: 0, Unnamed: 1
    if twice:
        raise DataError(f"{path}: columns {twice} appear more than once; give each column its own name")


def _csv_markers(path: Path, na_values: Sequence[str]) -> list[str]:
    """The texts that mark a missing cell of a CSV file, once its header is checked."""
    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; a CSV needs a header row of column names") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV file: {' '.join(str(error).split())}") from None
    _unique(path, header)
    return ["", "NaN", "nan", *map(str, na_values)]


def _masked(frame: pd.DataFrame, na_values: Sequence[str]) -> pd.DataFrame:
    """A Parquet frame with its text cells equal to one of ``na_values`` missing."""
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    if len(na_values) and text:
        frame[text] = frame[text].mask(frame[text].isin(list(na_values)))
    return frame


def _holed(frame: pd.DataFrame) -> list:
    """The float columns with holes whose observed values are all whole numbers."""
    return [c for c in frame.columns if frame[c].dtype.kind == "f" and frame[c].isna().any()
            and (frame[c].dropna() % 1 == 0).all() and frame[c].abs().max() < 2**63]


def _read_csv(path: Path, na_values: Sequence[str]) -> pd.DataFrame:
    """A CSV file with only empty cells, ``NaN`` and ``na_values`` missing; whole-number columns
    with holes as ``Int64``. Repeated names are refused (pandas would rename ``a`` to ``a.1``)."""
    markers = _csv_markers(path, na_values)
    try:  # round_trip: pandas 3's default parser can miss the last bit, and observed cells stay exact
        frame = pd.read_csv(path, float_precision="round_trip", keep_default_na=False, na_values=markers)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV file: {' '.join(str(error).split())}") from None
    holed = _holed(frame)
    if holed:
        text = pd.read_csv(path, usecols=holed, dtype=str, keep_default_na=False, na_values=markers)
        for c in holed:
            if text[c].dropna().str.fullmatch(r"[+-]?\d+").all():
                frame[c] = text[c].astype("Int64")
    return frame


def read_frame(path: str | Path, id: str = "id", time: str = "time", na_values: Sequence[str] = ()) -> pd.DataFrame:
    """One file as a DataFrame: a table, or sequences in long format (``id``, ``time``, values).
    Cells equal to one of ``na_values`` (text, as the file has it) are missing."""
    path = Path(path)
    kind = _format(path)
    if isinstance(na_values, str):
        raise DataError(f"na_values must be a list of markers, got the string {na_values!r}")
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if kind == ".csv":
        return _read_csv(path, na_values)
    if kind == ".parquet":
        _pyarrow(path)
        import pyarrow

        try:
            frame = pd.read_parquet(path)
        except (pyarrow.ArrowException, OSError) as error:
            raise DataError(f"{path}: not a readable Parquet file: {' '.join(str(error).split())}") from None
        return _masked(frame, na_values)
    _, array, columns = _npz_array(path)
    columns = columns or [f"x{i}" for i in range(array.shape[-1])]
    if array.ndim == 2:
        return pd.DataFrame(array, columns=columns)
    n, t, f = array.shape
    steps = pd.DataFrame({id: np.repeat(np.arange(n), t), time: np.tile(np.arange(t), n)})
    return pd.concat([steps, pd.DataFrame(array.reshape(n * t, f), columns=columns)], axis=1)


def read_files(paths: str | Path | Sequence[str | Path], id: str = "id", time: str | None = None,
               na_values: Sequence[str] = ()) -> pd.DataFrame:
    """One file, or several joined on ``id`` (and ``time``, for sequences): every row of every
    file is kept (an outer join), so a sample absent from a file has that file's columns missing."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise DataError("no data files given")
    keys = [id] if time is None else [id, time]
    frames = [read_frame(p, id, time or "time", na_values) for p in paths]
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


def read_chunks(path: str | Path, rows: int, na_values: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """A table file as consecutive frames of ``rows`` rows (the last may be shorter), read
    one at a time: CSV by pandas' chunked reader, Parquet batch by batch; the frames hold the
    values that :func:`read_frame` reads, split (a CSV column's type is inferred per chunk: a
    chunk's column of whole numbers with holes is ``Int64``, even where the file writes them
    as ``2.0``)."""
    path = Path(path)
    kind = _format(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if kind == ".csv":
        markers = _csv_markers(path, na_values)
        with pd.read_csv(path, float_precision="round_trip", keep_default_na=False, na_values=markers,
                         chunksize=rows) as reader:
            for frame in reader:
                yield frame.astype(dict.fromkeys(_holed(frame), "Int64"))
        return
    if kind == ".npz":
        frame = read_frame(path)
        for start in range(0, len(frame), rows):
            yield frame.iloc[start : start + rows]
        return
    _pyarrow(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    ranged = '"kind": "range"' in (parquet.schema_arrow.metadata or {}).get(b"pandas", b"").decode()
    pending, start = [], 0

    def frame(batches: list) -> pd.DataFrame:
        out = _masked(pa.Table.from_batches(batches, schema=parquet.schema_arrow).to_pandas(), na_values)
        return out.set_axis(pd.RangeIndex(start, start + len(out))) if ranged else out

    for batch in parquet.iter_batches(batch_size=rows):  # batches end at row groups: gathered into whole chunks
        pending.append(batch)
        while sum(len(b) for b in pending) >= rows:
            table = pa.Table.from_batches(pending, schema=parquet.schema_arrow)
            pending = [b for b in table.slice(rows).to_batches() if len(b)]
            yield frame(table.slice(0, rows).to_batches())
            start += rows
    if pending:
        yield frame(pending)


class FrameWriter:
    """Write a table chunk by chunk into ``path`` in the format of its suffix, atomically (the
    file appears whole when the ``with`` block ends without an error): CSV appends rows,
    Parquet adds a row group per chunk, NPZ gathers the chunks and writes them at the end. The
    file holds what :func:`write_frame` writes for the chunks' concatenation."""

    def __init__(self, path: str | Path, like: str | Path | None = None):
        self.path, self.like = Path(path), like
        self.kind = _format(self.path)
        if self.kind == ".parquet":
            _pyarrow(self.path)
        self._stack = ExitStack()
        self._writer, self._frames = None, []

    def __enter__(self) -> FrameWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind != ".npz":
            self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == ".csv":
            frame.to_csv(self._tmp, index=False, mode="a" if self._writer else "w", header=self._writer is None)
            self._writer = True
        elif self.kind == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=not isinstance(frame.index, pd.RangeIndex))
            if self._writer is None:
                self._writer = self._stack.enter_context(pq.ParquetWriter(self._tmp, table.schema))
            self._writer.write_table(table.cast(self._writer.schema))
        else:
            self._frames.append(frame)

    def __exit__(self, *error) -> None:
        self._stack.__exit__(*error)
        if self.kind == ".npz" and error[0] is None:
            write_frame(pd.concat(self._frames), self.path, self.like)


def sample_rows(frames: Iterable[pd.DataFrame], rows: int, seed: int = 0) -> pd.DataFrame:
    """A uniform sample of at most ``rows`` rows of a table read in chunks, in the table's
    order (the whole table when it has no more rows): each row gets a seeded uniform key, and
    the rows of the ``rows`` smallest keys are kept as the chunks go by, so memory holds at
    most ``rows`` rows and a chunk."""
    rng = np.random.default_rng(seed)
    kept, keys = None, np.empty(0)
    for frame in frames:
        kept = frame if kept is None else pd.concat([kept, frame])
        keys = np.concatenate([keys, rng.random(len(frame))])
        if len(kept) > rows:
            chosen = np.sort(np.argpartition(keys, rows)[:rows])
            kept, keys = kept.iloc[chosen], keys[chosen]
    if kept is None:
        raise DataError("empty table: no rows")
    return kept
