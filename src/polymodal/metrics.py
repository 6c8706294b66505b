"""Evaluation metrics on tensors; masks select the entries that count."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .gaussian import w2


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


def _flat(values: Tensor) -> np.ndarray:
    return values.detach().cpu().flatten(1).numpy()


@torch.no_grad()
def cross_coherence(model, batch, source: str, target: str, labels: Tensor, classifier, features=None) -> float:
    """Fraction of ``target`` modalities generated from ``source`` alone (the likelihood's
    mean) that ``classifier`` assigns to the source's class ``labels``.

    ``classifier`` is any fitted object with ``predict`` on flattened features, trained on the
    target modality's real training data; ``features`` (default: flatten) maps the generated
    values to what it reads, e.g. :func:`polymodal.datasets.print_features`."""
    generated = model.predict(batch, target, [source], proba=True).cpu()
    x = _flat(generated) if features is None else _flat(features(generated))
    return float(np.mean(classifier.predict(x) == labels.cpu().numpy()))


@torch.no_grad()
def latent_accuracy(model, train, test, train_labels: Tensor, test_labels: Tensor) -> dict[str, float]:
    """Linear-probe accuracy from each modality alone: a logistic regression fitted on the
    posterior means ``embed`` gives the training samples that have the modality, given only
    that modality, scored on the test samples that have it."""
    from sklearn.linear_model import LogisticRegression

    scores = {}
    for name in model.schema.names:
        others = [n for n in model.schema.names if n != name]
        has_train, has_test = train.present(name).cpu(), test.present(name).cpu()
        z_train = model.embed(train.without(*others)).cpu()[has_train].numpy()
        z_test = model.embed(test.without(*others)).cpu()[has_test].numpy()
        probe = LogisticRegression(max_iter=2000).fit(z_train, train_labels.cpu()[has_train].numpy())
        scores[name] = float(probe.score(z_test, test_labels.cpu()[has_test].numpy()))
    return scores


@torch.no_grad()
def posterior_w2(model, batch, a: str, b: str) -> Tensor:
    """``[B, B]`` 2-Wasserstein distances between the unimodal posteriors q(z | a_i) and
    q(z | b_j) of every pair of samples (diagonal closed form, ``gaussian.w2``, then the square
    root); the diagonal holds the pairs of the data, the rest unrelated pairs."""
    q_a, q_b = model.encode(batch.without(b)), model.encode(batch.without(a))
    return w2(q_a[:, None], q_b[None, :]).clamp_min(0).sqrt().cpu()


def relatedness(distances: Tensor) -> dict[str, Tensor | float]:
    """The paired (diagonal) and unpaired (off-diagonal) entries of a ``[B, B]`` distance
    matrix, for histograms, and their means."""
    eye = torch.eye(len(distances), dtype=torch.bool)
    paired, unpaired = distances[eye], distances[~eye]
    return {"paired": paired, "unpaired": unpaired, "paired_mean": float(paired.mean()), "unpaired_mean": float(unpaired.mean())}


def class_distances(distances: Tensor, labels_a: Tensor, labels_b: Tensor, classes: int) -> Tensor:
    """``[C, C]``: entry (i, j) is the mean of ``distances[k, l]`` over samples k of class i
    (rows, modality a) and l of class j (columns, modality b); NaN where a class is absent."""
    rows = torch.nn.functional.one_hot(labels_a.long(), classes).float()
    cols = torch.nn.functional.one_hot(labels_b.long(), classes).float()
    totals = rows.T @ distances.float() @ cols
    counts = rows.sum(0)[:, None] * cols.sum(0)[None, :]
    return totals / counts


def mmd(x: Tensor, y: Tensor, bandwidth: float | None = None) -> Tensor:
    """Squared maximum mean discrepancy between samples ``x`` ``[N, d]`` and ``y`` ``[M, d]``,
    the biased V-statistic mean(K_xx) + mean(K_yy) - 2 mean(K_xy), diagonals included, with
    the MFM reference code's kernel k(a, b) = exp(-||a - b||^2 / bandwidth). The bandwidth is
    d^2 by default (``d`` the dimension), as the code's ``mean((a - b)^2) / d`` is. The
    V-statistic is >= 0 and is 0 for identical samples; between two draws of one distribution
    it is positive by O(1/N) (its bias). Differentiable, for use as a loss."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd needs two [N, d] sample matrices of one dimension, got {tuple(x.shape)} and {tuple(y.shape)}")
    scale = float(x.shape[1] ** 2) if bandwidth is None else float(bandwidth)
    if scale <= 0:
        raise ValueError(f"mmd: bandwidth must be positive, got {bandwidth!r}")

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-((a[:, None] - b[None, :]) ** 2).sum(-1) / scale)

    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def macro_f1(predicted, target, classes: int | None = None) -> float:
    """Unweighted mean over classes of the F1 score 2 TP / (2 TP + FP + FN); a class neither
    predicted nor present counts as 0 only if listed by ``classes`` (default: the classes
    present in either)."""
    predicted, target = np.asarray(predicted).ravel(), np.asarray(target).ravel()
    labels = range(classes) if classes is not None else np.union1d(predicted, target)
    scores = []
    for c in labels:
        tp = np.sum((predicted == c) & (target == c))
        wrong = np.sum((predicted == c) != (target == c))
        scores.append(2 * tp / (2 * tp + wrong) if 2 * tp + wrong else 0.0)
    return float(np.mean(scores))
