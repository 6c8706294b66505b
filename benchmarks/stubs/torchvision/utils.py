"""``make_grid`` (the images of a batch ``[B, C, H, W]`` tiled into one grid); any other name raises when used."""

import math

import torch


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0, **_: object) -> torch.Tensor:
    if images.dim() == 3:
        images = images.unsqueeze(1)
    b, c, h, w = images.shape
    cols = min(nrow, b)
    rows = math.ceil(b / cols)
    grid = images.new_full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for i in range(b):
        r, k = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def __getattr__(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    from ._unavailable import Unavailable

    return Unavailable
