"""Noisy bidirectional spirals (the MDMM/BFVI paper's synthetic data), generated exactly as
the reference generator does: legacy ``numpy.random.seed(1)`` stream, 1000 spirals of 100
steps, the first 500 generated clockwise, 600 for training and 400 for testing.

Modalities per time step: ``x`` and ``y`` (the noisy coordinates, no normalisation) and
``direction`` (categorical: 0 clockwise, 1 counter-clockwise), which this library adds so
that label prediction from a sequence can be measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import Batch
from ..likelihoods import Gaussian
from ..modalities import Modality, Schema

STEPS = 100


def generate_spirals(n: int = 1000, steps: int = STEPS, train: int = 600, seed: int = 1) -> pd.DataFrame:
    """One row per spiral and step: ``spiral`` (its number), ``step``, ``x``, ``y`` (clean),
    ``noisy_x``, ``noisy_y``, ``r``, ``theta``, ``direction`` (-1 clockwise, +1 not), ``ratio``
    and ``split`` ("train" for the first ``train`` generated, else "test")."""
    rand = np.random.RandomState(seed)
    numbers = list(range(n))
    rand.shuffle(numbers)
    frames = []
    for i in range(n):
        direction = -1 if i < n // 2 else 1
        start_r = 0.25 + rand.uniform() * 0.5
        stop_r = 2.25 + rand.uniform() * 0.5
        start_theta = direction * rand.uniform() * np.pi
        stop_theta = direction * (rand.uniform() * np.pi + 4 * np.pi)
        ratio = 2 ** (2 * rand.uniform() - 1)
        r = np.linspace(start_r, stop_r, steps)
        theta = np.linspace(start_theta, stop_theta, steps)
        x = np.sqrt(ratio) * r * np.cos(theta)
        y = r * np.sin(theta) / np.sqrt(ratio)
        noisy_x = x + 0.1 * rand.randn(steps)
        noisy_y = y + 0.1 * rand.randn(steps)
        frames.append(pd.DataFrame({
            "spiral": numbers[i], "step": np.arange(steps), "x": x, "y": y, "noisy_x": noisy_x, "noisy_y": noisy_y,
            "r": r, "theta": theta, "direction": direction, "ratio": ratio, "split": "train" if i < train else "test",
        }))
    return pd.concat(frames, ignore_index=True)


def spirals_schema() -> Schema:
    """``x``, ``y``: Gaussian with a learned scale; ``direction``: 2 classes; all per step."""
    learned = Gaussian(learn_scale=True)
    return Schema([
        Modality("x", (), learned, sequential=True),
        Modality("y", (), learned, sequential=True),
        Modality("direction", (), "categorical", num_classes=2, sequential=True),
    ])


def spirals_batch(table: pd.DataFrame) -> Batch:
    """A batch of the spirals in ``table``, ordered by spiral number."""
    table = table.sort_values(["spiral", "step"])
    n = table["spiral"].nunique()
    shape = (n, -1)
    data = {
        "x": table["noisy_x"].to_numpy().reshape(shape),
        "y": table["noisy_y"].to_numpy().reshape(shape),
        "direction": (table["direction"].to_numpy() > 0).astype(float).reshape(shape),
    }
    return Batch.from_data(spirals_schema(), data)


def load_spirals() -> tuple[Batch, Batch]:
    """The 600 training and 400 test spirals, complete."""
    table = generate_spirals()
    return spirals_batch(table[table["split"] == "train"]), spirals_batch(table[table["split"] == "test"])
