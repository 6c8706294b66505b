"""Simulators of missing data, for training-time corruption and for benchmarks.

Masks follow the library's convention: ``True`` means *observed*. Feature-level masks
(:func:`mcar`, :func:`mar`, :func:`mnar`) return a boolean tensor; modality-level
corruptions (:func:`drop_modalities`, :func:`paired_split`; on sequences they act per
sequence) and time-step corruptions (:func:`drop_steps`, :func:`drop_burst`,
:func:`keep_segment`; :func:`drop_entries` for single entries of sequences) take and return
a :class:`~polymodal.Batch`, and only ever remove observations.

MAR and MNAR follow the VSAE paper's appendix C.4, with the probability read as the
probability of being *missing*:

* MAR: the first ``ceil(M/4)`` features of each row are always observed; every other
  feature of the row is missing with probability ``sigmoid(sum_{k<=K} x_k / M)``.
* MNAR: feature i is missing with probability ``sigmoid(x_i)``.

On min-max scaled data both give high missing rates (MNAR about 0.5 to 0.73): that is the
paper's definition, not a bug. Use :func:`mcar` to set a rate directly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data import Batch


def _rows(x: Any) -> Tensor:
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x, dtype=torch.float32)
    if x.dim() != 2:
        raise ValueError(f"expected a table of shape (N, M), got {tuple(x.shape)}")
    return torch.nan_to_num(x)


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"missing rate must be in [0, 1), got {rate}")


def mcar(shape: tuple[int, ...], rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Observed mask where each entry is missing independently with probability ``rate``."""
    _check_rate(rate)
    return torch.rand(shape, generator=generator) >= rate


def mar(x: Any, generator: torch.Generator | None = None) -> Tensor:
    """MAR mask for a table ``x`` (N, M): missingness depends on always-observed features."""
    x = _rows(x)
    n, m = x.shape
    k = math.ceil(m / 4)
    p_missing = torch.sigmoid(x[:, :k].sum(1, keepdim=True) / m).expand(n, m - k)
    observed = torch.ones(n, m, dtype=torch.bool)
    observed[:, k:] = torch.rand(n, m - k, generator=generator) >= p_missing
    return observed


def mnar(x: Any, generator: torch.Generator | None = None) -> Tensor:
    """MNAR mask for a table ``x`` (N, M): feature i is missing with probability sigmoid(x_i)."""
    x = _rows(x)
    return torch.rand(x.shape, generator=generator) >= torch.sigmoid(x)


def _sample_presence(batch: Batch) -> Tensor:
    """``[M, B]``: whether each modality has any observed entry in each sample (or sequence)."""
    return torch.stack([batch.observed[name].reshape(len(batch), -1).any(1) for name in batch.schema.names])


def _keep(batch: Batch, keep: Tensor) -> Batch:
    """Mask out, per sample, every modality whose row of ``keep`` ([M, B]) is False."""
    observed = {}
    for i, name in enumerate(batch.schema.names):
        shape = (-1,) + (1,) * (batch.observed[name].dim() - 1)
        observed[name] = batch.observed[name] & keep[i].view(shape).to(batch.device)
    return batch.with_observed(observed)


def drop_modalities(batch: Batch, rate: float, generator: torch.Generator | None = None) -> Batch:
    """Remove each present modality of each sample with probability ``rate``.

    A sample always keeps at least one of the modalities it had: when all would be removed,
    one of them, chosen uniformly, is kept.
    """
    _check_rate(rate)
    present = _sample_presence(batch).cpu()
    keep = present & (torch.rand(present.shape, generator=generator) >= rate)
    emptied = present.any(0) & ~keep.any(0)
    scores = torch.rand(present.shape, generator=generator).masked_fill(~present, -1.0)
    rescue = torch.zeros_like(keep)
    rescue[scores.argmax(0), torch.arange(present.shape[1])] = True
    return _keep(batch, keep | (rescue & emptied))


def paired_split(batch: Batch, fraction: float, generator: torch.Generator | None = None) -> Batch:
    """Weak supervision: a random ``fraction`` of samples stays complete; each other sample keeps
    exactly one modality, assigned in turn so that the unpaired pools have equal sizes (a
    sample lacking its assigned modality keeps one it has, chosen uniformly).

    The number of samples is unchanged, as in the MVAE paper's weak-supervision experiments.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"paired fraction must be in [0, 1], got {fraction}")
    n, m = len(batch), len(batch.schema)
    order = torch.randperm(n, generator=generator)
    n_paired = round(fraction * n)
    keep = torch.zeros(m, n, dtype=torch.bool)
    keep[:, order[:n_paired]] = True
    unpaired = order[n_paired:]
    present = _sample_presence(batch).cpu()[:, unpaired]
    scores = torch.rand(present.shape, generator=generator)
    scores[torch.arange(len(unpaired)) % m, torch.arange(len(unpaired))] += 2.0  # the assigned modality first
    scores = scores.masked_fill(~present, -1.0)
    keep[scores.argmax(0), unpaired] = True
    return _keep(batch, keep)


def _sequential(batch: Batch, names: list[str] | None) -> list[str]:
    if names is None:
        names = [m.name for m in batch.schema if m.sequential]
        if not names:
            raise ValueError(f"no sequential modality in {batch.schema.names}; time-step corruptions need [B, T, ...] data")
    for name in names:
        if not batch.schema[name].sequential:
            raise ValueError(f"modality {name!r} is not sequential; time-step corruptions need [B, T, ...] data")
    return names


def _keep_steps(batch: Batch, keep: dict[str, Tensor]) -> Batch:
    """Mask out the time steps whose ``keep[name]`` ([B, T]) is False."""
    observed = {}
    for name, steps in keep.items():
        mask = batch.observed[name]
        observed[name] = mask & steps.to(mask.device).view(*steps.shape, *[1] * (mask.dim() - 2))
    return batch.with_observed(observed)


def drop_steps(
    batch: Batch, fraction: float, names: list[str] | None = None, generator: torch.Generator | None = None
) -> Batch:
    """Delete ``int(fraction * T)`` time steps chosen uniformly, independently for each
    sequential modality (default: all) and each sequence."""
    names = _sequential(batch, names)
    keep = {}
    for name in names:
        b, t = batch.observed[name].shape[:2]
        order = torch.rand(b, t, generator=generator).argsort(1)
        keep[name] = order >= int(fraction * t)  # the int(fraction * T) lowest ranks go
    return _keep_steps(batch, keep)


def drop_burst(
    batch: Batch,
    fraction: float,
    names: list[str] | None = None,
    generator: torch.Generator | None = None,
    lengths: Tensor | None = None,
) -> Batch:
    """Delete one contiguous burst of ``int(fraction * L)`` steps at a uniformly random start
    in ``[0, L - length]``, independently for each sequential modality (default: all) and each
    sequence, where L is the sequence's length: ``lengths`` ``[B]`` (default: all T steps), so
    that the burst of a padded sequence falls inside it and is as long as if it were alone."""
    names = _sequential(batch, names)
    keep = {}
    for name in names:
        b, t = batch.observed[name].shape[:2]
        size = torch.full((b,), t) if lengths is None else lengths.cpu().long()
        length = (fraction * size.double()).long()
        start = (torch.rand(b, generator=generator, dtype=torch.float64) * (size - length + 1)).long()
        steps = torch.arange(t)
        keep[name] = (steps < start[:, None]) | (steps >= (start + length)[:, None])
    return _keep_steps(batch, keep)


def drop_entries(
    batch: Batch, fraction: float, names: list[str] | None = None, generator: torch.Generator | None = None
) -> Batch:
    """Delete single entries: each sequence draws a rate uniformly in ``[0, fraction]`` and
    loses each entry of the named sequential modalities (default: all) at that rate, so that
    steps come out partly observed, and sequences anywhere from whole to sparse."""
    _check_rate(fraction)
    observed = {}
    for name in _sequential(batch, names):
        mask = batch.observed[name]
        rate = torch.rand(mask.shape[0], generator=generator) * fraction
        kept = torch.rand(mask.shape, generator=generator) >= rate.view(-1, *[1] * (mask.dim() - 1))
        observed[name] = mask & kept.to(mask.device)
    return batch.with_observed(observed)


def keep_segment(batch: Batch, start: float, stop: float, names: list[str] | None = None) -> Batch:
    """Keep only steps in ``[int(start * T), int(stop * T))`` of the named sequential modalities
    (default: all), e.g. ``keep_segment(b, 0, 0.75)`` to extrapolate the last quarter."""
    if not 0.0 <= start <= stop <= 1.0:
        raise ValueError(f"segment must satisfy 0 <= start <= stop <= 1, got [{start}, {stop})")
    names = _sequential(batch, names)
    keep = {}
    for name in names:
        b, t = batch.observed[name].shape[:2]
        steps = torch.arange(t)
        keep[name] = ((steps >= int(start * t)) & (steps < int(stop * t))).expand(b, t)
    return _keep_steps(batch, keep)
