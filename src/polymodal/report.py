"""Plots of a run, written as PNG files, and the self-contained HTML report of a run folder."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from .data import Batch  # noqa: E402
from .evaluation import Evaluation  # noqa: E402
from .files import atomic_write  # noqa: E402
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
    fig = _history_figure(history)
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


def _png(fig) -> str:
    """The figure as a base64 PNG, closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _flat(batch: Batch, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and masks of one modality as ``[rows, features]`` (time steps as rows)."""
    mod = batch.schema[name]
    width = mod.size
    return batch.values[name].float().reshape(-1, width).numpy(), batch.observed[name].reshape(-1, width).numpy()


def scatter_figure(evaluation: Evaluation, most: int = 12):
    """Per numeric feature (of at most ``most``): imputed against true value on the hidden entries."""
    panels = []
    for mod in evaluation.truth.schema:
        if mod.categorical or len(mod.shape) > 1:
            continue
        truth, seen = _flat(evaluation.truth, mod.name)
        _, kept = _flat(evaluation.held, mod.name)
        guess, _ = _flat(evaluation.imputed, mod.name)
        for j in range(truth.shape[1]):
            hidden = seen[:, j] & ~kept[:, j]
            if hidden.any():
                panels.append((mod.name if truth.shape[1] == 1 else f"{mod.name}[{j}]", truth[hidden, j], guess[hidden, j]))
    panels = panels[:most]
    if not panels:
        return None
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, true, guess) in zip(axes.flat, panels):
        low, high = float(min(true.min(), guess.min())), float(max(true.max(), guess.max()))
        ax.plot([low, high], [low, high], color="0.7", lw=1)
        ax.scatter(true, guess, s=6, alpha=0.7)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.supxlabel("true value (scaled)", fontsize=9)
    fig.supylabel("imputed", fontsize=9)
    fig.tight_layout()
    return fig


def missingness_figure(evaluation: Evaluation, rows: int = 120):
    """Which entries of the first ``rows`` samples (steps) were observed, hidden for scoring, or missing."""
    names = [m.name for m in evaluation.truth.schema if len(m.shape) <= 1]
    if not names:
        return None
    seen = np.concatenate([_flat(evaluation.truth, n)[1][:rows] for n in names], 1)
    kept = np.concatenate([_flat(evaluation.held, n)[1][:rows] for n in names], 1)
    state = np.where(kept, 2, np.where(seen, 1, 0))
    widths = [evaluation.truth.schema[n].size for n in names]
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.35 * state.shape[1], 12), 3.6))
    colours = matplotlib.colors.ListedColormap(["#d9534f", "#f0ad4e", "#337ab7"])
    ax.imshow(state, aspect="auto", interpolation="nearest", cmap=colours, vmin=0, vmax=2)
    ticks = np.cumsum([0, *widths[:-1]])
    ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("sample" if not any(m.sequential for m in evaluation.truth.schema) else "step (sequences one after another)")
    handles = [matplotlib.patches.Patch(color=c, label=t) for c, t in
               zip(colours.colors, ["missing in the data", "hidden for scoring", "observed"])]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@torch.no_grad()
def image_figure(model: Model, evaluation: Evaluation, n: int = 8):
    """Per image modality: test images, their reconstructions, and the images generated
    from the other modalities alone (cross generation)."""
    images = [m.name for m in model.schema if len(m.shape) >= 2 and not m.sequential]
    if not images:
        return None
    shown = evaluation.truth.select(slice(0, n))
    fig, axes = plt.subplots(3 * len(images), len(shown), figsize=(1.1 * len(shown) + 1.5, 3.4 * len(images)), squeeze=False)
    recon = model.reconstruct(shown)
    for i, name in enumerate(images):
        others = [m for m in model.schema.names if m != name]
        cross = model.predict(shown, name, others, proba=True).cpu() if others else recon[name].mean.cpu()

        def picture(x):
            x = x.float().cpu()
            return x.permute(1, 2, 0).squeeze(-1) if x.dim() == 3 else x

        _grid(axes[3 * i], [picture(x) for x in shown.values[name]], f"{name}")
        _grid(axes[3 * i + 1], [picture(x) for x in recon[name].mean], "reconstruction")
        _grid(axes[3 * i + 2], [picture(x) for x in cross], f"from {', '.join(others) or 'prior'}")
    fig.tight_layout()
    return fig


def _first(x: torch.Tensor) -> torch.Tensor:
    """``[N, T, ...]`` to ``[N, T]``: the first feature of a vector modality at each step."""
    return x.reshape(*x.shape[:2], -1)[..., 0]


def sequence_figure(evaluation: Evaluation, n: int = 4, features: int = 3):
    """The first ``n`` sequences: per numeric feature, the truth, the observed points the
    model saw, the hidden points and the imputation."""
    names = [m.name for m in evaluation.truth.schema if m.sequential and not m.categorical][:features]
    if not names:
        return None
    n = min(n, len(evaluation.truth))
    fig, axes = plt.subplots(len(names), n, figsize=(3.0 * n, 2.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        truth, seen = _first(evaluation.truth.values[name].float()), _first(evaluation.truth.observed[name])
        kept, guess = _first(evaluation.held.observed[name]), _first(evaluation.imputed.values[name].float())
        t = torch.arange(truth.shape[1])
        for i, ax in enumerate(row):
            x, s, k, g = truth[i], seen[i], kept[i], guess[i]
            span = slice(int(t[s].min()), int(t[s].max()) + 1) if s.any() else slice(0, 0)  # not the padding
            ax.plot(t[s], x[s], color="0.75", lw=1, label="truth")
            ax.plot(t[span], g[span], color="C1", lw=1.2, label="imputed")
            ax.scatter(t[k], x[k], s=6, color="k", label="observed", zorder=3)
            ax.scatter(t[s & ~k], x[s & ~k], s=12, facecolors="none", edgecolors="C3", label="hidden", zorder=3)
            ax.tick_params(labelsize=7)
            ax.set_title(f"sequence {i}", fontsize=8)
        row[0].set_ylabel(name)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def _history_figure(history: list[dict[str, float]]):
    fig, ax = plt.subplots(figsize=(6, 3.4))
    epochs = [h["epoch"] for h in history]
    for key in ("loss", "valid_loss"):
        values = [h.get(key) for h in history]
        if any(v is not None and np.isfinite(v) for v in values):
            ax.plot(epochs, values, label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per sample")
    ax.legend()
    fig.tight_layout()
    return fig


def _table(scores: dict[str, dict[str, float]]) -> str:
    metrics = list(dict.fromkeys(k for s in scores.values() for k in s))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    rows = []
    for name, s in scores.items():
        cells = "".join(f"<td>{s[m]:.4g}</td>" if m in s else "<td></td>" for m in metrics)
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>modality</th>{head}</tr>{''.join(rows)}</table>"


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
pre{background:#f6f6f6;padding:.8em;font-size:.8em;overflow:auto}img{max-width:100%}"""


def history(run: str | Path) -> list[dict[str, float]]:
    """The run's ``history.csv`` as records (empty if there is none)."""
    path = Path(run) / "history.csv"
    return pd.read_csv(path).to_dict("records") if path.is_file() else []


def write_report(run: str | Path, evaluation: Evaluation | None = None) -> Path:
    """Write ``report.html`` into the run folder of ``polymodal fit``: one self-contained page
    (plots embedded as PNG) with the config, the loss curves, the scores per modality and
    pictures that fit the data. ``evaluation`` is the run's scoring (see
    :func:`polymodal.run.rescore`); without it the page has no scores or pictures."""
    from .persistence import load  # persistence knows every model: only needed here

    run = Path(run)
    model = load(run / "model")
    # a run of `fit` has its config; one of `demo` has results.json instead
    written = next((run / name for name in ("config.yaml", "results.json") if (run / name).is_file()), None)
    records = history(run)
    parts = [f"<h1>polymodal run: {html.escape(model.name)} on {html.escape(run.name)}</h1>"]
    modalities = ", ".join(f"{m.name} ({'sequence of ' if m.sequential else ''}"
                           f"{'x'.join(map(str, m.shape)) or 'scalar'}, {m.likelihood.name})" for m in model.schema)
    parts.append(f"<p>{len(records)} epochs; modalities: {html.escape(modalities)}</p>")
    if records:
        parts.append(f'<h2>Training</h2><img alt="loss curves" src="data:image/png;base64,{_png(_history_figure(records))}">')
    if evaluation is not None:
        e = evaluation
        parts.append("<h2>Scores on hidden entries</h2>" + _table(e.scores))
        figures = {"Imputed against true values (hidden entries)": scatter_figure(e),
                   "Missingness pattern": missingness_figure(e),
                   "Images: reconstructions and cross generation": image_figure(model, e),
                   "Sequences: observed, hidden and imputed": sequence_figure(e)}
        for title, fig in figures.items():
            if fig is not None:
                parts.append(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
                             f'src="data:image/png;base64,{_png(fig)}">')
    if written is not None:
        parts.append(f"<h2>{written.name}</h2><pre>{html.escape(written.read_text())}</pre>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>polymodal run {html.escape(run.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = run / "report.html"
    atomic_write(path, lambda p: p.write_text(page))
    return path


def _show(ax, image: Tensor) -> None:
    """One image on ``ax``: grey ``(h, w)`` dark on light, RGB ``(3, h, w)`` as it is."""
    image = image.detach().cpu().clamp(0, 1)
    if image.dim() == 3:
        ax.imshow(image.permute(1, 2, 0).numpy())
    else:
        ax.imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=1)


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
                _show(ax, batch.values[left if j % 2 == 0 else right][rows[j // 2]])
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


@torch.no_grad()
def plot_factor_generations(model: Model, batch: Batch, path: str | Path, draws: int = 6) -> Path:
    """MFM's conditional generation (the paper's Fig. 2): for each sample of ``batch`` and each
    latent block of ``model.blocks`` (Z_y, then each Z_a), a row that fixes that block at the
    sample's code and draws the others from the prior, ``draws`` times; the columns show every
    image modality of each draw, the sample itself first. Fixing Z_y should keep the content
    (the class) and vary the style; fixing a Z_a the reverse."""
    images = [m.name for m in model.schema if len(m.shape) >= 2 and not m.sequential]
    codes = model.embed(batch)
    rows = [(i, block) for i in range(len(batch)) for block in model.blocks]
    width = len(images) * (draws + 1)
    fig, axes = plt.subplots(len(rows), width, figsize=(0.5 * width + 1.2, 0.55 * len(rows)), squeeze=False)
    for row, (i, block) in zip(axes, rows):
        drawn = model.generate(draws, codes={block: codes[i, model.blocks[block]]})
        for k, name in enumerate(images):
            column = k * (draws + 1)
            _show(row[column], batch.values[name][i])
            for j in range(draws):
                _show(row[column + 1 + j], drawn.values[name][j])
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{i}: fixed {'Z_y' if block == 'y' else 'Z_a ' + block}", rotation=0, ha="right",
                          va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.12, right=0.99, top=0.99, bottom=0.01)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_traces(truth: Tensor, predicted: dict[str, Tensor], path: str | Path, n: int = 3,
                channels: tuple[str, ...] = ("x", "y", "z"), title: str = "") -> Path:
    """Sequences ``[B, T, C]`` against the truth: one row per sequence (the first ``n``), one
    column per channel, each method of ``predicted`` as its own line."""
    c = truth.shape[-1]
    fig, axes = plt.subplots(n, c, figsize=(3.2 * c, 1.8 * n), squeeze=False, sharex=True)
    for i, row in enumerate(axes):
        for j, ax in enumerate(row):
            ax.plot(truth[i, :, j].cpu(), color="k", lw=1.4, label="truth")
            for method, values in predicted.items():
                ax.plot(values[i, :, j].detach().cpu(), lw=1.0, label=method)
            if i == 0:
                ax.set_title(channels[j] if j < len(channels) else str(j), fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
