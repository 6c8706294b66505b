import numpy as np
import pytest

import polymodal as pm
from polymodal.datasets.physionet import VARIABLES


def write_stay(folder, record, rows, age="54", height="-1", weight="80.5"):
    lines = ["Time,Parameter,Value", f"00:00,RecordID,{record}", f"00:00,Age,{age}", "00:00,Gender,1",
             f"00:00,Height,{height}", "00:00,ICUType,3", f"00:00,Weight,{weight}", *rows]
    (folder / f"{record}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def challenge(tmp_path):
    write_stay(tmp_path, 132539, ["00:07,HR,73", "00:37,HR,77", "01:10,Temp,36.5", "13:00,Weight,82", "48:00,HR,90"])
    write_stay(tmp_path, 132540, ["05:59,GCS,15", "06:00,GCS,14"], age="76", height="175.3", weight="-1")
    return tmp_path


def test_the_challenge_files_become_48_hourly_rows_per_stay_and_one_row_of_descriptors(challenge):
    series, descriptors = pm.load_physionet2012(challenge)
    assert list(series.columns) == ["RecordID", "Hour", *VARIABLES]
    assert len(series) == 2 * 48 and series.groupby("RecordID")["Hour"].apply(list).map(lambda h: h == list(range(48))).all()
    first = series[series.RecordID == 132539].set_index("Hour")
    assert first.loc[0, "HR"] == pytest.approx(75.0)  # two readings in hour 0: their mean
    assert first.loc[1, "Temp"] == 36.5 and first.loc[13, "Weight"] == 82.0
    assert first.loc[47, "HR"] == 90.0  # 48:00 closes the last hour
    assert np.isnan(first.loc[0, "Weight"])  # the admission weight is a descriptor, not a measurement
    second = series[series.RecordID == 132540].set_index("Hour")
    assert second.loc[5, "GCS"] == 15 and second.loc[6, "GCS"] == 14
    assert series.drop(columns=["RecordID", "Hour"]).notna().sum().sum() == 6  # every other entry is missing
    assert list(descriptors.index) == [132539, 132540]
    assert descriptors.loc[132539].tolist()[:4] == [54.0, 1.0, pytest.approx(np.nan, nan_ok=True), 3.0]
    assert descriptors.loc[132539, "Weight"] == 80.5 and np.isnan(descriptors.loc[132540, "Weight"])
    assert descriptors.loc[132540, "Height"] == 175.3


def test_the_hourly_series_make_a_batch_of_sequences(challenge):
    series = pm.load_physionet2012(challenge)[0][["RecordID", "Hour", "HR", "GCS", "Temp", "Weight"]]
    batch = pm.SequenceSchema(id="RecordID", time="Hour").fit(series).transform(series)
    assert len(batch) == 2 and batch.values["HR"].shape[:2] == (2, 48)
    assert int(sum(m.sum() for m in batch.observed.values())) == 6


def test_bad_files_are_named(tmp_path):
    with pytest.raises(pm.DataError, match="no .txt records"):
        pm.load_physionet2012(tmp_path)
    with pytest.raises(pm.DataError, match="not a folder"):
        pm.load_physionet2012(tmp_path / "absent")
    write_stay(tmp_path, 1, ["00:07,Pulse,73"])
    with pytest.raises(pm.DataError, match=r"1\.txt: unknown parameters \['Pulse'\]"):
        pm.load_physionet2012(tmp_path)
    write_stay(tmp_path, 1, ["7 minutes,HR,73"])
    with pytest.raises(pm.DataError, match=r"1\.txt, line 8: expected HH:MM"):
        pm.load_physionet2012(tmp_path)
    (tmp_path / "1.txt").write_text("Time,Parameter,Value\n00:05,HR,70\n")
    with pytest.raises(pm.DataError, match="no RecordID"):
        pm.load_physionet2012(tmp_path)
