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
from .evaluation import FEW, Evaluation, column_scores, features, metric  # noqa: E402
from .files import atomic_write  # noqa: E402
from .models.base import Model  # noqa: E402
from .tables import SequenceSchema, Transform  # noqa: E402


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
    return features(batch, name).astype(np.float32), features(batch, name, batch.observed[name])


class Units:
    """The user's names and units of each modality's features, from the run's data
    transform: column names, numeric values unscaled, categories by name. Without a
    transform (a model trained on tensors), features are ``name[j]`` in the model's values."""

    def __init__(self, transform: Transform | None = None):
        self.tables = transform.tables_ if isinstance(transform, SequenceSchema) else transform

    def columns(self, name: str, size: int) -> list[str]:
        if self.tables is None:
            return [name] if size == 1 else [f"{name}[{j}]" for j in range(size)]
        return [str(c) for c in self.tables.modality_columns_[name]]

    def values(self, name: str, x: np.ndarray) -> np.ndarray:
        """``[rows, features]`` of modality ``name`` in the columns' units."""
        if self.tables is None:
            return x
        cols = self.tables.modality_columns_[name]
        if cols[0] in self.tables.categories_:
            return x
        return x * np.array([self.tables.scale_[c] for c in cols]) + np.array([self.tables.min_[c] for c in cols])

    def categories(self, name: str, classes: int) -> list[str]:
        if self.tables is None:
            return [str(k) for k in range(classes)]
        return [str(c) for c in self.tables.categories_[self.tables.modality_columns_[name][0]]]


def _hidden_columns(evaluation: Evaluation, units: Units, categorical: bool):
    """Per feature of the modalities of one kind with hidden entries: its column name, and
    the true and imputed values there in the column's units (codes for categories)."""
    for mod in evaluation.truth.schema:
        if mod.categorical != categorical or (not categorical and len(mod.shape) > 1):
            continue
        truth, seen = _flat(evaluation.truth, mod.name)
        _, kept = _flat(evaluation.held, mod.name)
        guess, _ = _flat(evaluation.imputed, mod.name)
        truth, guess = units.values(mod.name, truth), units.values(mod.name, guess)
        for j, column in enumerate(units.columns(mod.name, mod.size)):
            hidden = seen[:, j] & ~kept[:, j]
            if hidden.any():
                yield mod, column, truth[hidden, j], guess[hidden, j]


def scatter_figure(evaluation: Evaluation, units: Units | None = None):
    """Per numeric column: imputed against true value on the hidden entries, in the column's units."""
    panels = [(column, true, guess) for _, column, true, guess in _hidden_columns(evaluation, units or Units(), False)]
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
        ax.set_title(f"{name} ({len(true)} hidden)", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.supxlabel("true value" if units and units.tables is not None else "true value (model's scale)", fontsize=9)
    fig.supylabel("imputed", fontsize=9)
    fig.tight_layout()
    return fig


def confusion_tables(evaluation: Evaluation, units: Units | None = None) -> str:
    """Per categorical column, an HTML table counting its hidden entries by true category
    (rows) and imputed category (columns); the diagonal holds the right ones."""
    units, parts = units or Units(), []
    for mod, column, true, guess in _hidden_columns(evaluation, units, True):
        names = units.categories(mod.name, mod.num_classes)
        counts = np.zeros((len(names), len(names)), dtype=int)
        np.add.at(counts, (true.astype(int), guess.astype(int)), 1)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in names)
        body = "".join(f"<tr><th>{html.escape(c)}</th>" + "".join(
            f"<td class='{'right' if i == j else ''}'>{counts[i, j]}</td>" for j in range(len(names))) + "</tr>"
            for i, c in enumerate(names))
        parts.append(f"<table class='confusion' data-column='{html.escape(column)}'><caption>{html.escape(column)}: "
                     f"{len(true)} hidden entries, {int(np.trace(counts))} imputed right</caption>"
                     f"<tr><th>true \\ imputed</th>{head}</tr>{body}</table>")
    return "".join(parts)


def _inside(batch: Batch) -> np.ndarray:
    """``[B, T]``: the steps of each sequence from its first to its last step with any
    observed entry; the others are padding of a shorter sequence (all True for static data)."""
    lead = 2 if any(m.sequential for m in batch.schema) else 1
    seen = torch.stack([batch.observed[m.name].reshape(*batch.observed[m.name].shape[:lead], -1).any(-1)
                        for m in batch.schema]).any(0)
    if lead == 1:
        return np.ones(len(batch), dtype=bool)
    return (seen.cummax(1).values & seen.flip(1).cummax(1).values.flip(1)).numpy()


def missingness_figure(evaluation: Evaluation, rows: int = 120, units: Units | None = None):
    """Which entries of the first ``rows`` samples (steps) were observed, hidden for scoring,
    or missing; the padding after (or before) a shorter sequence is shown as such."""
    units = units or Units()
    names = [m.name for m in evaluation.truth.schema if len(m.shape) <= 1]
    if not names:
        return None
    seen = np.concatenate([_flat(evaluation.truth, n)[1][:rows] for n in names], 1)
    kept = np.concatenate([_flat(evaluation.held, n)[1][:rows] for n in names], 1)
    inside = _inside(evaluation.truth).reshape(-1)[:rows, None]
    state = np.where(kept, 3, np.where(seen, 2, np.where(inside, 1, 0)))
    columns = [c for n in names for c in units.columns(n, evaluation.truth.schema[n].size)]
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.35 * state.shape[1], 12), 3.6))
    colours = matplotlib.colors.ListedColormap(["#eeeeee", "#d9534f", "#f0ad4e", "#337ab7"])
    ax.imshow(state, aspect="auto", interpolation="nearest", cmap=colours, vmin=0, vmax=3)
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    sequences = any(m.sequential for m in evaluation.truth.schema)
    ax.set_ylabel("step (sequences one after another)" if sequences else "sample")
    labels = ["padding (outside the sequence)", "missing in the data", "hidden for scoring", "observed"]
    shown = [k for k in range(4) if (state == k).any() or k > 0]
    handles = [matplotlib.patches.Patch(color=colours.colors[k], label=labels[k]) for k in shown]
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


def sequence_figure(evaluation: Evaluation, n: int = 4, units: Units | None = None):
    """The first ``n`` sequences: per numeric feature of every sequential modality (one row
    each, labelled with its column), the truth, the observed points the model saw, the hidden
    points and the imputation within the sequence, in the column's units."""
    units = units or Units()
    features = []
    for mod in evaluation.truth.schema:
        if mod.sequential and not mod.categorical and len(mod.shape) <= 1:
            for j, column in enumerate(units.columns(mod.name, mod.size)):
                features.append((mod.name, j, column))
    if not features:
        return None
    n = min(n, len(evaluation.truth))
    steps = evaluation.truth.values[features[0][0]].shape[1]

    def series(batch: Batch, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Values in the columns' units and masks of the first ``n`` sequences, ``[n, T, features]``."""
        x, mask = (part[name][:n].reshape(n * steps, -1).numpy() for part in (batch.values, batch.observed))
        return units.values(name, x.astype(float)).reshape(n, steps, -1), mask.reshape(n, steps, -1)

    fig, axes = plt.subplots(len(features), n, figsize=(3.0 * n, 2.0 * len(features)), squeeze=False)
    inside = _inside(evaluation.truth)[:n]
    t = np.arange(steps)
    for row, (name, j, column) in zip(axes, features):
        (truth, seen), (guess, _), (_, kept) = (series(b, name) for b in (evaluation.truth, evaluation.imputed,
                                                                          evaluation.held))
        for i, ax in enumerate(row):
            x, s, k, g, span = truth[i, :, j], seen[i, :, j], kept[i, :, j], guess[i, :, j], inside[i]
            ax.plot(t[s], x[s], color="0.75", lw=1, label="truth")
            ax.plot(t[span], g[span], color="C1", lw=1.2, label="imputed")  # not in the padding
            ax.scatter(t[k], x[k], s=6, color="k", label="observed", zorder=3)
            ax.scatter(t[s & ~k], x[s & ~k], s=12, facecolors="none", edgecolors="C3", label="hidden", zorder=3)
            ax.tick_params(labelsize=7)
            ax.set_title(f"sequence {i}", fontsize=8)
        row[0].set_ylabel(column)
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


def _number(value: float) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.4g}"


def _table(scores: dict[str, dict]) -> str:
    """Per modality: the entries scored, the imputation's score beside each baseline's (a
    score worse than a baseline's marked), and the held-out log-likelihood if there is one."""
    baselines = list(dict.fromkeys(b for s in scores.values() for b in s.get("baselines", {})))
    likelihood = any("log_likelihood" in s for s in scores.values())
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["entries", "metric", "model", *baselines,
                                                          *(["log-likelihood"] if likelihood else [])])
    rows = []
    for name, s in scores.items():
        key = metric(s)
        bad = bool(s.get("worse_than"))
        cells = [str(s["entries"]), key]
        model = f"<td class='{'worse' if bad else ''}'>{_number(s[key])}{' !' if bad else ''}</td>"
        found = s.get("baselines", {})
        tail = [_number(found[b][key]) if b in found else "" for b in baselines]
        tail += [_number(s.get("log_likelihood"))] if likelihood else []
        rows.append(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + model
                    + "".join(f"<td>{c}</td>" for c in tail) + "</tr>")
    return f"<table class='scores'><tr><th>modality</th>{head}</tr>{''.join(rows)}</table>"


def _column_table(records: list[dict]) -> str:
    """Per column: the hidden entries scored (a note where fewer than ``FEW``), the
    imputation's score beside each baseline's, a score worse than a baseline's marked."""
    baselines = list(dict.fromkeys(k for r in records for k in r["baselines"]))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["modality", "entries", "metric", "model", *baselines, "note"])
    rows = []
    for r in records:
        bad = bool(r["worse_than"])
        note = []
        if bad:
            note.append(f"worse than {' and '.join(r['worse_than'])}")
        if r["entries"] < FEW:
            note.append(f"only {r['entries']} entries: too few for the score to mean much")
        rows.append(f"<tr data-column='{html.escape(str(r['column']))}'><th>{html.escape(str(r['column']))}</th>"
                    f"<td>{html.escape(r['modality'])}</td><td class='entries'>{r['entries']}</td><td>{r['metric']}</td>"
                    f"<td class='{'worse' if bad else ''}'>{_number(r['model'])}{' !' if bad else ''}</td>"
                    + "".join(f"<td>{_number(r['baselines'].get(b))}</td>" for b in baselines)
                    + f"<td class='note'>{html.escape('; '.join(note))}</td></tr>")
    return f"<table class='columns'><tr><th>column</th>{head}</tr>{''.join(rows)}</table>"


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
pre{background:#f6f6f6;padding:.8em;font-size:.8em;overflow:auto}img{max-width:100%}
td.worse{color:#b00;font-weight:bold}td.right{font-weight:bold}td.note{text-align:left;color:#555}
table.confusion{display:inline-table;margin:0 1.5em 1em 0;vertical-align:top}
caption{font-size:.9em;text-align:left;white-space:nowrap}
p.warning{color:#b00}"""


def history(run: str | Path) -> list[dict[str, float]]:
    """The run's ``history.csv`` as records (empty if there is none)."""
    path = Path(run) / "history.csv"
    return pd.read_csv(path).to_dict("records") if path.is_file() else []


def write_report(run: str | Path, evaluation: Evaluation | None = None) -> Path:
    """Write ``report.html`` into the run folder of ``polymodal fit``: one self-contained page
    (plots embedded as PNG) with the config, the loss curves, the scores per modality and
    pictures that fit the data. ``evaluation`` is the run's scoring (see
    :func:`polymodal.run.rescore`); without it the page has no scores or pictures."""
    from .persistence import TRANSFORM, load, load_transform  # persistence knows every model: only needed here

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
        units = Units(load_transform(run / "model") if (run / "model" / TRANSFORM).is_file() else None)
        parts.append("<h2>Scores on hidden entries</h2><p>Lower is better: NRMSE (RMSE over the column's standard "
                     "deviation) for numeric columns, PFC (the fraction imputed wrong) for categorical ones, beside "
                     "simple baselines on the same entries: the column's mean or mode in tables, linear interpolation "
                     "and the last observation carried forward in sequences.</p>" + _table(e.scores))
        flagged = [name for name, s in e.scores.items() if s.get("worse_than")]
        if flagged:
            parts.append(f"<p class='warning'>! The model imputes {html.escape(', '.join(flagged))} worse than a simple "
                         "baseline.</p>")
        labels = {m.name: units.columns(m.name, m.size) for m in e.truth.schema}
        columns = [r for r in column_scores(e, labels) if len(e.truth.schema[r["modality"]].shape) <= 1]  # not pixels
        if columns:
            parts.append("<h2>Scores per column</h2>" + _column_table(columns))
        confusion = confusion_tables(e, units)
        if confusion:
            parts.append("<h2>Categorical columns: true against imputed category (hidden entries)</h2>" + confusion)
        figures = {"Imputed against true values (hidden entries)": scatter_figure(e, units),
                   "Missingness pattern": missingness_figure(e, units=units),
                   "Images: reconstructions and cross generation": image_figure(model, e),
                   "Sequences: observed, hidden and imputed": sequence_figure(e, units=units)}
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
