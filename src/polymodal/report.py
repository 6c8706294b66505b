"""Plots of a run, written as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from .data import Batch  # noqa: E402
from .models.base import Model  # noqa: E402


def _grid(axes_row, images, title: str) -> None:
    for i, ax in enumerate(axes_row):
        if i >= len(images):
            ax.axis("off")
            continue
        ax.imshow(np.asarray(images[i]), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    axes_row[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)


@torch.no_grad()
def plot_image_label(
    model: Model,
    test: Batch,
    path: str | Path,
    image: str = "image",
    label: str = "label",
    n: int = 10,
) -> Path:
    """Three rows: images generated from each label; test images; their reconstructions."""
    classes = model.schema[label].num_classes
    k = min(n, classes)
    labels = torch.arange(k)
    given = Batch.from_data(model.schema, {label: labels.numpy()})
    from_label = model.predict(given, image, [label], proba=True).cpu()
    shown = test.select(slice(0, n))
    recon = model.reconstruct(shown)[image].mean.cpu()
    cols = max(k, len(shown))
    fig, axes = plt.subplots(3, cols, figsize=(1.1 * cols + 1.5, 3.8), squeeze=False)
    _grid(axes[0], from_label, f"{image}\nfrom {label}")
    _grid(axes[1], shown.values[image].cpu(), f"test {image}")
    _grid(axes[2], recon, "reconstruction")
    for ax, c in zip(axes[0], labels.tolist()):
        ax.set_title(str(c), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_history(history: list[dict[str, float]], path: str | Path) -> Path:
    """Training and validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [h["epoch"] for h in history]
    for key in ("loss", "valid_loss"):
        if key in history[0]:
            ax.plot(epochs, [h[key] for h in history], label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per sample")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_trajectories(
    tasks: dict[str, tuple[Batch, dict[str, Batch]]],
    truth: Batch,
    path: str | Path,
    x: str = "x",
    y: str = "y",
    n: int = 4,
) -> Path:
    """2-D trajectories of two sequential modalities: one row per task, one column per
    sequence (the first ``n``). ``tasks`` maps a task name to its inputs and each method's
    completed batch; each panel shows the truth, the observed inputs (where both ``x`` and
    ``y`` are) and every method's completion."""
    fig, axes = plt.subplots(len(tasks), n, figsize=(2.4 * n + 1.2, 2.4 * len(tasks)), squeeze=False)
    for row, (task, (inputs, completed)) in zip(axes, tasks.items()):
        seen = (inputs.present(x) & inputs.present(y)).cpu()
        for i, ax in enumerate(row):
            ax.plot(truth.values[x][i].cpu(), truth.values[y][i].cpu(), color="0.75", lw=1, label="truth")
            ax.scatter(truth.values[x][i][seen[i]].cpu(), truth.values[y][i][seen[i]].cpu(), s=5, color="k", label="observed")
            for method, batch in completed.items():
                ax.plot(batch.values[x][i].cpu(), batch.values[y][i].cpu(), lw=1.2, label=method)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal", adjustable="datalim")
        row[0].set_ylabel(task)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pairs(
    batch: Batch, labels: Tensor, path: str | Path, left: str = "hand", right: str = "print", per_class: int = 10
) -> Path:
    """``per_class`` pairs of every class, a row per class: each ``left`` image next to its
    ``right`` partner (grey images dark on light, RGB ``(3, h, w)`` images as they are)."""
    classes = sorted(int(c) for c in labels.unique())
    fig, axes = plt.subplots(len(classes), 2 * per_class, figsize=(0.5 * 2 * per_class, 0.55 * len(classes)), squeeze=False)
    for row, c in zip(axes, classes):
        rows = (labels == c).nonzero()[:per_class, 0]
        for j, ax in enumerate(row):
            ax.axis("off")
            if j // 2 < len(rows):
                image = batch.values[left if j % 2 == 0 else right][rows[j // 2]].cpu()
                if image.dim() == 3:
                    ax.imshow(image.permute(1, 2, 0).numpy())
                else:
                    ax.imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=1)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.01, right=0.99, top=0.99, bottom=0.01)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_relatedness(distances: Tensor, labels_a: Tensor, labels_b: Tensor, path: str | Path, names=("a", "b")) -> Path:
    """MEME's relatedness figures from a ``[B, B]`` matrix of W2 distances between the
    unimodal posteriors of modality a (rows) and b (columns) (``metrics.posterior_w2``):
    histograms of paired (diagonal) and unpaired distances, the class-by-class mean distance
    matrix, and a dendrogram of the classes (average linkage on the symmetrised matrix)."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    from .metrics import class_distances, relatedness

    classes = int(max(labels_a.max(), labels_b.max())) + 1
    split, matrix = relatedness(distances), class_distances(distances, labels_a, labels_b, classes)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    bins = np.linspace(0, float(distances.max()), 40)
    axes[0].hist(split["unpaired"].numpy(), bins=bins, density=True, alpha=0.6, label="unpaired")
    axes[0].hist(split["paired"].numpy(), bins=bins, density=True, alpha=0.6, label="paired")
    axes[0].set_xlabel(f"W2(q(z | {names[0]}), q(z | {names[1]}))")
    axes[0].legend()
    image = axes[1].imshow(matrix.numpy(), cmap="viridis")
    axes[1].set_xlabel(f"class of {names[1]}")
    axes[1].set_ylabel(f"class of {names[0]}")
    fig.colorbar(image, ax=axes[1])
    symmetric = (matrix + matrix.T).numpy() / 2
    np.fill_diagonal(symmetric, 0.0)
    dendrogram(linkage(squareform(symmetric, checks=False), "average"), ax=axes[2], labels=list(range(classes)))
    axes[2].set_xlabel("class")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
