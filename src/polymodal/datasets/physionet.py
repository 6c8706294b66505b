"""PhysioNet/CinC Challenge 2012 (mortality prediction in the ICU), read from a local copy of
the challenge's own files: one ``RecordID.txt`` per ICU stay (sets a, b and c hold 4,000
stays each), with ``Time,Parameter,Value`` rows over the first 48 hours. Nothing is
downloaded; point :func:`load_physionet2012` at the folder of a set.

The challenge defines the rows at time 00:00 named RecordID, Age, Gender (0 female, 1 male),
Height (cm), ICUType (1 coronary care, 2 cardiac surgery recovery, 3 medical, 4 surgical)
and Weight (kg) as the stay's general descriptors, -1 marking one unknown; Weight recorded
later is a time series. Every other row is a measurement of one of 36 time series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data import DataError

DESCRIPTORS = ("Age", "Gender", "Height", "ICUType", "Weight")
VARIABLES = (
    "Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine", "DiasABP", "FiO2", "GCS", "Glucose",
    "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP", "MechVent", "Na", "NIDiasABP", "NIMAP", "NISysABP", "PaCO2", "PaO2",
    "pH", "Platelets", "RespRate", "SaO2", "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC", "Weight",
)
HOURS = 48


def _read_stay(path: Path) -> tuple[int, dict[str, float], pd.DataFrame]:
    """One stay's RecordID, descriptors (NaN for -1) and measurements (``hour``, ``Parameter``,
    ``Value`` rows)."""
    try:
        rows = pd.read_csv(path, dtype={"Time": str, "Parameter": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{path}: not a PhysioNet 2012 record ({error})") from None
    if list(rows.columns) != ["Time", "Parameter", "Value"]:
        raise DataError(f"{path}: expected the columns Time,Parameter,Value, got {','.join(map(str, rows.columns))}")
    clock = rows["Time"].str.fullmatch(r"\d+:\d\d")
    values = pd.to_numeric(rows["Value"], errors="coerce")
    bad = ~clock.fillna(False).astype(bool) | values.isna()
    if bad.any():
        line = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}, line {line + 2}: expected HH:MM,Parameter,number, got {rows.iloc[line].tolist()}")
    minutes = rows["Time"].str.split(":", expand=True).astype(int) @ np.array([60, 1])
    unknown = sorted(set(rows["Parameter"]) - {"RecordID", *DESCRIPTORS, *VARIABLES})
    if unknown:
        raise DataError(f"{path}: unknown parameters {unknown}; the challenge's are {['RecordID', *DESCRIPTORS, *VARIABLES]}")
    at_admission = minutes.eq(0)
    # the first 00:00 row of each descriptor is the descriptor; a later Weight is a measurement
    descriptor = at_admission & rows["Parameter"].isin(["RecordID", *DESCRIPTORS]) & ~rows["Parameter"].duplicated()
    given = dict(zip(rows["Parameter"][descriptor], values[descriptor]))
    if "RecordID" not in given:
        raise DataError(f"{path}: no RecordID row at 00:00")
    stay = {name: np.nan if given.get(name, -1) == -1 else float(given[name]) for name in DESCRIPTORS}
    measured = ~descriptor
    hour = (minutes[measured] // 60).clip(upper=HOURS - 1)  # a row at 48:00 closes the last hour
    series = pd.DataFrame({"Hour": hour.to_numpy(), "Parameter": rows["Parameter"][measured].to_numpy(),
                           "Value": values[measured].to_numpy()})
    return int(given["RecordID"]), stay, series


def load_physionet2012(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stays of one challenge set in ``folder`` (its ``*.txt`` files, one per stay).

    Returns ``series, descriptors``:

    * ``series``: long format, one row per stay and hour, ``RecordID``, ``Hour`` (0-47: the
      hour of the stay a measurement fell in, 48:00 counted in hour 47) and the 37 time
      series of :data:`VARIABLES` in the challenge's units, the mean of an hour's
      measurements, NaN where none was made; ready for
      ``SequenceSchema(id="RecordID", time="Hour")``;
    * ``descriptors``: one row per stay, indexed by ``RecordID``: Age, Gender, Height,
      ICUType and Weight at admission, NaN where the challenge's file gives -1 or nothing.

    Raises :class:`DataError` naming the file and line of a malformed row, an unknown
    parameter or a missing RecordID, and for a folder without records.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"load_physionet2012: {folder} is not a folder (expected a challenge set's RecordID.txt files)")
    paths = sorted(folder.glob("*.txt"))
    if not paths:
        raise DataError(f"load_physionet2012: no .txt records in {folder}")
    ids, stays, frames = [], [], []
    for path in paths:
        record, stay, series = _read_stay(path)
        ids.append(record)
        stays.append(stay)
        frames.append(series.assign(RecordID=record))
    repeated = pd.Series(ids)[pd.Series(ids).duplicated()]
    if len(repeated):
        raise DataError(f"load_physionet2012: RecordID {repeated.iloc[0]} appears in more than one file of {folder}")
    hourly = pd.concat(frames).pivot_table(index=["RecordID", "Hour"], columns="Parameter", values="Value", aggfunc="mean")
    grid = pd.MultiIndex.from_product([sorted(ids), range(HOURS)], names=["RecordID", "Hour"])
    series = hourly.reindex(index=grid, columns=list(VARIABLES)).reset_index()
    series.columns.name = None
    descriptors = pd.DataFrame(stays, index=pd.Index(ids, name="RecordID")).sort_index()
    return series, descriptors
