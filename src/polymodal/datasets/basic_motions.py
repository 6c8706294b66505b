"""BasicMotions: the accelerometer and gyroscope of a smart watch (3 axes each, 100 steps at
10 Hz) while its wearer stands, walks, runs or plays badminton; 40 training and 40 test
sequences, 10 of each activity in each split. The ``aeon`` package ships the data inside its
wheel (``pip install polymodal[data]``); nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from ..data import Batch
from ..modalities import Modality, Schema

ACTIVITIES = ("standing", "walking", "running", "badminton")
SENSORS = ("accel", "gyro")
LABELS = ("sequence", "step", None)
LEARNED = {"name": "gaussian", "learn_scale": True}


def basic_motions_schema(label: str | None = "sequence", likelihood: Any = LEARNED) -> Schema:
    """``accel`` and ``gyro`` (3 axes per step, sequential, of ``likelihood``: by default
    Gaussian with a learned scale),
    then ``activity`` (4 classes, in the order of :data:`ACTIVITIES`): one per sequence with
    ``label="sequence"``, repeated at every step with ``"step"`` (for the sequence models,
    whose modalities are all per step), none with ``None``."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    modalities = [Modality(name, (3,), likelihood, sequential=True) for name in SENSORS]
    if label is not None:
        modalities.append(Modality("activity", (), "categorical", num_classes=len(ACTIVITIES), sequential=label == "step"))
    return Schema(modalities)


def aeon_split(name: str, split: str) -> tuple[Any, np.ndarray]:
    """aeon's ``load_<name>(split=split)``: the series and their class names; an ImportError
    naming the extra when aeon is missing."""
    try:
        from aeon import datasets
    except ImportError as error:
        raise ImportError(f"load_{name} needs the aeon package, which ships the data: pip install 'polymodal[data]'") from error
    return getattr(datasets, f"load_{name}")(split=split)


def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    series, names = aeon_split("basic_motions", split)
    return np.transpose(series, (0, 2, 1)).astype(np.float32), np.array([ACTIVITIES.index(n) for n in names])


def load_basic_motions(
    label: str | None = "sequence", validation: int = 8, seed: int = 0, likelihood: Any = LEARNED,
    split: int | None = None,
) -> tuple[Batch, Batch | None, Batch]:
    """``train, validation, test`` batches of BasicMotions, complete.

    The 40 training and 40 test sequences are the archive's; with ``split`` an integer, the
    80 are pooled and split anew, 40 and 40 stratified by activity (10 of each on each side),
    with ``split`` as the random seed, so that results can be averaged over several test sets.
    ``validation`` of the 40 training sequences (stratified: 2 per activity by default, chosen
    with ``seed``) are held out for model selection, leaving 32 to train on; with
    ``validation=0`` all 40 train and the validation batch is ``None``. Each channel is standardised with the mean and SD of the
    training sequences (all steps), and the same scaling is applied to validation and test.
    ``label`` and ``likelihood`` are as in :func:`basic_motions_schema`.
    """
    schema = basic_motions_schema(label, likelihood)
    series, activity = _split("train")
    test_series, test_activity = _split("test")
    if split is not None:
        pooled, labels = np.concatenate([series, test_series]), np.concatenate([activity, test_activity])
        train, test = train_test_split(np.arange(len(labels)), test_size=len(test_activity), stratify=labels,
                                       random_state=split)
        train, test = np.sort(train), np.sort(test)
        series, activity, test_series, test_activity = pooled[train], labels[train], pooled[test], labels[test]
    order = np.arange(len(activity))
    fit, held = order, None
    if validation:
        parts = train_test_split(order, test_size=validation, stratify=activity, random_state=seed)
        fit, held = (np.sort(part) for part in parts)
    mean, sd = series[fit].mean(axis=(0, 1)), series[fit].std(axis=(0, 1))

    def batch(values: np.ndarray, labels: np.ndarray) -> Batch:
        scaled = torch.from_numpy((values - mean) / sd)
        data: dict[str, Tensor] = {"accel": scaled[..., :3], "gyro": scaled[..., 3:]}
        if label is not None:
            classes = torch.from_numpy(labels).float()
            data["activity"] = classes[:, None].expand(-1, values.shape[1]).contiguous() if label == "step" else classes
        return Batch.from_data(schema, data)

    held_out = None if held is None else batch(series[held], activity[held])
    return batch(series[fit], activity[fit]), held_out, batch(test_series, test_activity)
