"""JapaneseVowels: nine male speakers uttering the vowels /ae/, 12 LPC cepstrum coefficients
per 6.4 ms frame, 7-29 frames per utterance; 270 training and 370 test utterances (the UCI
set, as the ``aeon`` package ships it inside its wheel: ``pip install polymodal[data]``;
nothing is downloaded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..data import Batch
from ..modalities import Modality, Schema
from .basic_motions import LABELS, aeon_split

SPEAKERS = 9
# Unit noise on standardised coefficients says the noise is as large as the signal: the sequence
# models then keep nothing of a step in their latent path (README, MDMM); 0.1 fits them.
LIKELIHOOD = {"name": "gaussian", "scale": 0.1}
BANDS = ("lpc_low", "lpc_high")  # coefficients 1-6 and 7-12


def japanese_vowels_schema(label: str | None = None, likelihood: Any = LIKELIHOOD) -> Schema:
    """``lpc_low`` and ``lpc_high`` (6 coefficients per step each, sequential, of ``likelihood``:
    by default Gaussian of fixed scale 0.1 in standardised units), then
    with ``label`` the ``speaker`` (9 classes, 0-8): one per sequence (``"sequence"``) or at
    every step (``"step"``)."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    modalities = [Modality(name, (6,), likelihood, sequential=True) for name in BANDS]
    if label is not None:
        modalities.append(Modality("speaker", (), "categorical", num_classes=SPEAKERS, sequential=label == "step"))
    return Schema(modalities)


def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 29, 12]`` utterances padded with NaN after their last frame, and speakers 0-8."""
    series, names = aeon_split("japanese_vowels", split)
    padded = np.full((len(series), max(s.shape[1] for s in series), 12), np.nan, dtype=np.float32)
    for i, s in enumerate(series):
        padded[i, : s.shape[1]] = s.T
    return padded, np.array([int(n) - 1 for n in names])


def load_japanese_vowels(
    label: str | None = None, validation: int = 0, seed: int = 0, likelihood: Any = LIKELIHOOD
) -> tuple[Batch, Batch | None, Batch]:
    """``train, validation, test`` batches of JapaneseVowels, variable length: every batch has
    29 steps, and a shorter utterance's steps after its last frame are unobserved (the
    sequence models treat them as after its end).

    ``validation`` of the 270 training utterances (stratified by speaker, chosen with
    ``seed``) are held out, the validation batch is ``None`` without them. Each coefficient
    is standardised with the mean and SD of the training frames, and the same scaling is
    applied to validation and test. ``label`` and ``likelihood`` are as in
    :func:`japanese_vowels_schema`.
    """
    schema = japanese_vowels_schema(label, likelihood)
    series, speaker = _split("train")
    test_series, test_speaker = _split("test")
    fit, held = np.arange(len(speaker)), None
    if validation:
        parts = train_test_split(fit, test_size=validation, stratify=speaker, random_state=seed)
        fit, held = (np.sort(part) for part in parts)
    mean, sd = np.nanmean(series[fit], axis=(0, 1)), np.nanstd(series[fit], axis=(0, 1))

    def batch(values: np.ndarray, labels: np.ndarray) -> Batch:
        scaled = torch.from_numpy((values - mean) / sd)
        data = {"lpc_low": scaled[..., :6], "lpc_high": scaled[..., 6:]}
        if label is not None:
            classes = torch.from_numpy(labels).float()
            if label == "step":  # NaN after an utterance's last frame, like its coefficients
                classes = classes[:, None].expand(-1, values.shape[1]).masked_fill(scaled[..., 0].isnan(), float("nan"))
            data["speaker"] = classes
        return Batch.from_data(schema, data)

    held_out = None if held is None else batch(series[held], speaker[held])
    return batch(series[fit], speaker[fit]), held_out, batch(test_series, test_speaker)
