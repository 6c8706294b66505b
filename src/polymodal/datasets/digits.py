"""scikit-learn's 8x8 handwritten digits as a bimodal dataset: image and label."""

from __future__ import annotations

import numpy as np
import sklearn.datasets
import torch
from sklearn.model_selection import train_test_split

from ..data import Batch
from ..missing import paired_split
from ..modalities import Modality, Schema


def digits_schema() -> Schema:
    """``image``: 8x8 grey levels in [0, 1] (Bernoulli on logits); ``label``: 10 classes."""
    return Schema([Modality("image", (8, 8), "bernoulli"), Modality("label", (), "categorical", num_classes=10)])


def load_digits(paired: float = 1.0, seed: int = 0) -> tuple[Batch, Batch]:
    """Train and test batches of the digits data, on a fixed stratified 80/20 split.

    With ``paired < 1`` only that fraction of training samples keeps both modalities; the
    others keep only the image or only the label (equal pools, chosen with ``seed``), as in
    the MVAE paper's weak-supervision experiments. The test split is always complete.
    """
    if not 0.0 <= paired <= 1.0:
        raise ValueError(f"load_digits: paired must be a fraction in [0, 1], got {paired}")
    raw = sklearn.datasets.load_digits()
    images = (raw.images / 16.0).astype(np.float32)
    labels = raw.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    schema = digits_schema()
    train = Batch.from_data(schema, {"image": images[train_idx], "label": labels[train_idx]})
    test = Batch.from_data(schema, {"image": images[test_idx], "label": labels[test_idx]})
    if paired < 1.0:
        train = paired_split(train, paired, torch.Generator().manual_seed(seed))
    return train, test
