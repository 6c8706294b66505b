"""Evaluation metrics on tensors; masks select the entries that count."""

from __future__ import annotations

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
