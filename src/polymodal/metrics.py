"""Evaluation metrics on tensors; masks select the entries that count."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def accuracy(predicted: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Fraction of (masked) entries where ``predicted == target``."""
    hit = (predicted == target).float()
    return float(hit.mean() if mask is None else hit[mask].mean())


def mse(predicted: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Mean squared error over (masked) entries."""
    err = (predicted.float() - target.float()) ** 2
    return float(err.mean() if mask is None else err[mask].mean())


@torch.no_grad()
def cross_modal(model, test, image: str = "image", label: str = "label") -> dict[str, float]:
    """Label accuracy from the image alone and image MSE from the label alone."""
    predicted = model.predict(test, label, [image])
    generated = model.predict(test, image, [label], proba=True)
    return {
        f"{label}_accuracy_from_{image}": accuracy(predicted.cpu(), test.values[label]),
        f"{image}_mse_from_{label}": mse(generated.cpu(), test.values[image]),
    }


def _columns(table) -> np.ndarray:
    array = np.asarray(table, dtype=np.float64)
    return array[:, None] if array.ndim == 1 else array


def nrmse(imputed, truth, removed) -> float:
    """Normalised RMSE over the removed entries: per column, RMSE / std of the true column
    (NaN entries of ``truth``, unknown, left out of the std), averaged over the columns that
    have removed entries (the VSAE paper's metric)."""
    imputed, truth, removed = _columns(imputed), _columns(truth), _columns(removed).astype(bool)
    scores = []
    for j in range(truth.shape[1]):
        rows = removed[:, j]
        if rows.any():
            rmse_j = np.sqrt(np.mean((imputed[rows, j] - truth[rows, j]) ** 2))
            scores.append(rmse_j / max(np.nanstd(truth[:, j]), 1e-12))
    return float(np.mean(scores))


def rmse(imputed, truth, removed) -> float:
    """Root mean squared error over all removed entries."""
    imputed, truth, removed = _columns(imputed), _columns(truth), _columns(removed).astype(bool)
    return float(np.sqrt(np.mean((imputed[removed] - truth[removed]) ** 2)))


def pfc(imputed, truth, removed) -> float:
    """Proportion of falsely classified removed entries, per column, averaged over columns."""
    imputed, truth, removed = _columns(imputed), _columns(truth), _columns(removed).astype(bool)
    scores = [np.mean(imputed[removed[:, j], j] != truth[removed[:, j], j]) for j in range(truth.shape[1]) if removed[:, j].any()]
    return float(np.mean(scores))
