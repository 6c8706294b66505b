"""Two styles of the same digits, a small offline stand-in for MEME's MNIST-SVHN pair.

``hand`` is scikit-learn's 8x8 handwritten digit (grey levels in [0, 1]); ``print`` is a
printed digit of the same class rendered with matplotlib's bundled fonts, 3x16x16 RGB in
[0, 1], in the manner of a house number: a random font (DejaVu Sans, Serif or Mono, normal
or bold, upright or oblique), random foreground and background colours of contrasting
luminance, rotation, scale, translation, Gaussian pixel noise, and parts of neighbouring
digits at the left and right edges.

Rendering is fast: each (digit, font) glyph is drawn once with the Agg canvas at high
resolution, and every print is then three affine warps of those glyphs (``grid_sample``,
rendered at 4x and averaged down), all images at once.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sklearn.datasets
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from sklearn.model_selection import train_test_split
from torch import Tensor

from ..data import Batch
from ..missing import paired_split
from ..modalities import Modality, Schema

FONTS = [
    {"family": family, "weight": weight, "style": style}
    for family in ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")
    for weight in ("normal", "bold")
    for style in ("normal", "oblique")
]
GLYPH = 64  # side of a cached glyph; the digit is scaled to GLYPH_HEIGHT pixels of it
GLYPH_HEIGHT = 48
SIDE = 16  # side of a print
RENDER_SEED = 0  # the prints are the same images whatever the split seed


def digit_styles_schema(scale: float = 0.1, label: bool = False) -> Schema:
    """``hand`` (8, 8) and ``print`` (3, 16, 16), both with a Laplace likelihood of fixed
    ``scale`` (MEME's image likelihood; the paper uses scale 1 on 32x32 images, and on these
    small images a narrower one keeps the reconstruction from being swamped by the KL);
    ``print`` has the conv nets. With ``label`` a ``label`` modality (10 classes) follows."""
    likelihood = {"name": "laplace", "scale": scale}
    modalities = [Modality("hand", (8, 8), likelihood), Modality("print", (3, SIDE, SIDE), likelihood, net="conv")]
    if label:
        modalities.append(Modality("label", (), "categorical", num_classes=10))
    return Schema(modalities)


@functools.lru_cache(maxsize=1)
def _glyphs() -> tuple[Tensor, Tensor]:
    """``[10, F, GLYPH, GLYPH]`` ink coverage of every digit in every font, centred, and each
    glyph's ink width ``[10, F]`` as a fraction of the glyph side."""
    figure = Figure(figsize=(2, 2), dpi=100)
    canvas = FigureCanvasAgg(figure)
    ink = np.zeros((10, len(FONTS), GLYPH, GLYPH), dtype=np.float32)
    width = np.zeros((10, len(FONTS)), dtype=np.float32)
    for d in range(10):
        for f, font in enumerate(FONTS):
            figure.clear()
            figure.text(0.5, 0.5, str(d), fontproperties=FontProperties(size=100, **font), ha="center", va="center")
            canvas.draw()
            coverage = 1.0 - np.asarray(canvas.buffer_rgba(), dtype=np.float32)[..., 0] / 255.0
            rows, cols = np.nonzero(coverage > 0.05)
            crop = torch.from_numpy(coverage[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].copy())
            h, w = crop.shape
            w_scaled = max(1, min(GLYPH, round(w * GLYPH_HEIGHT / h)))
            resized = F.interpolate(crop[None, None], size=(GLYPH_HEIGHT, w_scaled), mode="area")[0, 0]
            top, left = (GLYPH - GLYPH_HEIGHT) // 2, (GLYPH - w_scaled) // 2
            ink[d, f, top : top + GLYPH_HEIGHT, left : left + w_scaled] = resized.numpy()
            width[d, f] = w_scaled / GLYPH
    return torch.from_numpy(ink), torch.from_numpy(width)


def _warp(glyphs: Tensor, angle: Tensor, scale: Tensor, shift: Tensor, size: int) -> Tensor:
    """Each glyph ``[N, G, G]`` rotated by ``angle``, scaled by ``scale`` and moved by
    ``shift`` ``[N, 2]`` (in units of half the output side), on a ``size`` x ``size`` grid."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    rotation = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # output -> glyph
    theta = torch.cat([rotation, -(rotation @ shift.unsqueeze(-1))], -1)
    grid = F.affine_grid(theta, [len(glyphs), 1, size, size], align_corners=False)
    return F.grid_sample(glyphs.unsqueeze(1), grid, align_corners=False, padding_mode="zeros")[:, 0]


def _contrasting_colours(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Foreground and background RGB ``[n, 3]`` whose luminances differ by at least 0.35."""
    luminance = torch.tensor([0.299, 0.587, 0.114])
    fg, bg = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
    poor = ((fg - bg) @ luminance).abs() < 0.35
    while poor.any():
        k = int(poor.sum())
        fg[poor], bg[poor] = torch.rand(k, 3, generator=g), torch.rand(k, 3, generator=g)
        poor = ((fg - bg) @ luminance).abs() < 0.35
    return fg, bg


def render_prints(labels: Tensor, seed: int = RENDER_SEED, noise: float = 0.05) -> Tensor:
    """Printed digits of classes ``labels`` ``[N]``: ``[N, 3, 16, 16]`` RGB in [0, 1],
    deterministic given ``seed``."""
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    ink, width = _glyphs()
    font = torch.randint(len(FONTS), (n,), generator=g)
    neighbours = torch.randint(10, (2, n), generator=g)
    angle = (torch.rand(n, generator=g) - 0.5) * math.radians(30)
    scale = 0.75 + 0.35 * torch.rand(n, generator=g)
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.3
    gap = 0.1 + 0.2 * torch.rand(2, n, generator=g)
    fine = 4 * SIDE
    coverage = _warp(ink[labels, font], angle, scale, shift, fine)
    for side, sign in enumerate((-1.0, 1.0)):  # the neighbour's centre: half of each width plus a gap, same font
        offset = scale * (width[labels, font] + width[neighbours[side], font]) + gap[side]
        moved = shift + torch.stack([sign * offset * torch.cos(angle), sign * offset * torch.sin(angle)], -1)
        coverage = torch.maximum(coverage, _warp(ink[neighbours[side], font], angle, scale, moved, fine))
    alpha = F.avg_pool2d(coverage.unsqueeze(1), 4)  # [N, 1, 16, 16]
    fg, bg = _contrasting_colours(n, g)
    image = bg[:, :, None, None] * (1 - alpha) + fg[:, :, None, None] * alpha
    return (image + noise * torch.randn(image.shape, generator=g)).clamp(0.0, 1.0)


def print_features(prints: Tensor) -> Tensor:
    """Features of prints ``[N, 3, h, w]`` for a linear classifier, ``[N, h * w]``: the
    luminance, its sign flipped where the border is brighter than the mean (so that ink is
    positive whatever the colours), standardised per image. Linear models on raw RGB prints
    are near chance, as on SVHN; on these they reach about 0.9."""
    lum = (prints * torch.tensor([0.299, 0.587, 0.114], device=prints.device)[:, None, None]).sum(-3)
    lum = lum - lum.mean((-2, -1), keepdim=True)
    border = torch.cat([lum[..., 0, :], lum[..., -1, :]], -1).mean(-1)
    lum = lum * -torch.where(border > 0, 1.0, -1.0)[..., None, None]
    return (lum / lum.std((-2, -1), keepdim=True).clamp_min(1e-6)).flatten(-2)


@functools.lru_cache(maxsize=1)
def _images() -> tuple[np.ndarray, Tensor, Tensor]:
    """The handwritten digits, their labels and their prints, rendered once per process."""
    raw = sklearn.datasets.load_digits()
    labels = torch.as_tensor(raw.target, dtype=torch.long)
    return (raw.images / 16.0).astype(np.float32), labels, render_prints(labels)


def load_digit_styles(paired: float = 1.0, seed: int = 0, label: bool = False) -> tuple[Batch, Batch, Tensor, Tensor]:
    """Handwritten and printed digits paired 1:1 within each class:
    ``train, test, train_labels, test_labels``.

    Every handwritten image is paired with its own rendered print of the same class (as
    MEME's code pairs MNIST and SVHN within a class); the split is :func:`load_digits`'
    fixed stratified 80/20 one. With ``paired < 1`` only that fraction of the training pairs
    stays complete; the others are split into ``hand``-only and ``print``-only halves
    (chosen with ``seed``), so no unpaired image has its partner in the data. The test split
    is always complete. The prints are the same images for every ``seed``.

    The class labels come back as tensors for evaluation, not as a modality; with
    ``label=True`` the batches also have a ``label`` modality, observed for every sample
    (the paired split applies to ``hand`` and ``print`` only).
    """
    hand, labels, prints = _images()
    schema = digit_styles_schema(label=label)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels.numpy(), random_state=0)
    split = []
    for idx in (train_idx, test_idx):
        data = {"hand": hand[idx], "print": prints[idx]}
        split.append(Batch.from_data(schema, {**data, "label": labels[idx]} if label else data))
    train, test = split
    if paired < 1.0:
        images = Batch.from_data(digit_styles_schema(), {"hand": train.values["hand"], "print": train.values["print"]})
        train = train.with_observed(paired_split(images, paired, torch.Generator().manual_seed(seed)).observed)
    return train, test, labels[train_idx], labels[test_idx]
