"""Batches of incomplete multimodal data.

A :class:`Batch` holds, for each modality of a :class:`~polymodal.Schema`, a value tensor
and a boolean ``observed`` mask of the same shape: ``[B, *features]`` for static modalities,
``[B, T, *features]`` for sequential ones. Missing entries hold 0 in ``values`` so that no
network ever sees NaN; what is missing is said by the mask alone. Whether a modality is
present for a sample (or a time step) is derived from the mask: present if any of its
entries is observed.

:meth:`Batch.from_data` builds a batch from tensors, numpy arrays or pandas frames, where
NaN means missing, and checks the input before any tensor math.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .likelihoods import Bernoulli
from .modalities import Modality, Schema

FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataError(ValueError):
    """Input data that does not match the schema."""


def _to_array(name: str, data: Any) -> np.ndarray:
    """``data`` as float64 with NaN where missing. Text, dates, complex numbers and other
    objects are refused naming the modality and the first bad entry; so is a ragged list."""
    if isinstance(data, Tensor):
        if data.is_complex():
            raise DataError(f"modality {name!r}: expected numbers, got a complex tensor")
        return data.detach().cpu().to(torch.float64).numpy()
    pd = sys.modules.get("pandas")  # data cannot be a pandas object unless pandas is loaded; import it no sooner
    labels = data if pd is not None and isinstance(data, (pd.DataFrame, pd.Series)) else None
    if labels is not None:
        data = data.to_numpy()
    try:
        array = np.asarray(data)
    except ValueError as error:
        raise DataError(f"modality {name!r}: expected a rectangular array of numbers ({error})") from None
    kind = array.dtype.kind
    if kind in "biuf":
        return array.astype(np.float64)
    if kind != "O":
        what = {"c": "complex numbers", "m": "time spans", "M": "dates", "U": "text", "S": "bytes"}.get(kind, array.dtype)
        raise DataError(f"modality {name!r}: expected numbers, got {what} (dtype {array.dtype})")
    import pandas as pd  # for isna of objects (None, NaN, pd.NA, NaT); only this rare path pays its import

    flat = array.ravel()
    missing = np.asarray(pd.isna(flat), dtype=bool)
    for i in np.flatnonzero(~missing):
        value = flat[i]
        if not isinstance(value, numbers.Real):
            position = np.unravel_index(i, array.shape)
            if isinstance(labels, pd.DataFrame):
                where = f"row {labels.index[position[0]]!r}, column {labels.columns[position[1]]!r}"
            elif isinstance(labels, pd.Series):
                where = f"row {labels.index[position[0]]!r}"
            else:
                where = f"index {tuple(int(p) for p in position)}"
            raise DataError(f"modality {name!r}: expected numbers, got {value!r} ({type(value).__name__}) at {where}")
    return np.where(missing, np.nan, flat).astype(np.float64).reshape(array.shape)


def _to_mask(name: str, given: Any) -> np.ndarray:
    """An ``observed`` mask as booleans; only booleans and 0/1 are accepted, since text such as
    ``"False"`` or a NaN would silently read as True."""
    mask = np.asarray(given.cpu() if isinstance(given, Tensor) else given)
    if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
        raise DataError(
            f"modality {name!r}: an observed mask must hold booleans (or 0 and 1), got {mask.ravel()[:3].tolist()} ({mask.dtype})"
        )
    return mask.astype(bool)


def _check_values(modality: Modality, array: np.ndarray, mask: np.ndarray) -> None:
    """Refuse observed values that the tensor or the likelihood of ``modality`` cannot hold:
    beyond float32's range, outside [0, 1] for a Bernoulli, not a class index in range for a
    Categorical."""
    name, seen = modality.name, array[mask]
    big = np.abs(seen) > FLOAT32_MAX
    if big.any():
        raise DataError(
            f"modality {name!r}: values {seen[big][:5].tolist()} exceed float32's range (±{FLOAT32_MAX:.3g}) "
            "and would become infinite; rescale the data"
        )
    if modality.categorical:
        k = modality.num_classes
        bad = (seen != np.round(seen)) | (seen < 0) | (seen >= k)
        if bad.any():
            raise DataError(f"modality {name!r}: categories must be integers in [0, {k - 1}], got {seen[bad][:5].tolist()}")
    if isinstance(modality.likelihood, Bernoulli):
        bad = (seen < 0) | (seen > 1)
        if bad.any():
            raise DataError(
                f"modality {name!r}: a Bernoulli likelihood scores values in [0, 1], got {seen[bad][:5].tolist()}; "
                "rescale the data (such as grey levels / 16) or use a Gaussian likelihood"
            )


@dataclass
class Batch:
    """Values and elementwise ``observed`` masks per modality."""

    schema: Schema
    values: dict[str, Tensor]
    observed: dict[str, Tensor]

    @classmethod
    def from_data(
        cls,
        schema: Schema,
        data: Mapping[str, Any],
        observed: Mapping[str, Any] | None = None,
    ) -> Batch:
        """Build and validate a batch; NaN (or ``observed=False``) marks missing entries.

        Modalities of the schema that ``data`` leaves out are missing for every sample.
        Raises :class:`DataError` for unknown modality names, wrong shapes, differing
        numbers of samples, text or other non-numbers, infinite values, values beyond
        float32's range, values the likelihood cannot score (categories out of range,
        Bernoulli values outside [0, 1]) and empty data.
        """
        if not isinstance(schema, Schema):
            raise TypeError(f"Batch.from_data: schema must be a Schema, got {type(schema).__name__}")
        if not isinstance(data, Mapping):
            raise DataError(f"data must map modality names {schema.names} to arrays, got {type(data).__name__}")
        observed = dict(observed or {})
        unknown = sorted((set(data) | set(observed)) - set(schema.names))
        if unknown:
            raise DataError(f"unknown modalities {unknown}; the schema has {schema.names}")
        orphans = sorted(set(observed) - set(data))
        if orphans:
            raise DataError(f"observed masks given for modalities {orphans} that have no values in the data")
        if not data:
            raise DataError(f"no data given; the schema has {schema.names}")
        arrays = {name: _to_array(name, x) for name, x in data.items()}
        sizes = {name: (a.shape[0] if a.ndim else 0) for name, a in arrays.items()}
        n = next(iter(sizes.values()))
        if any(size != n for size in sizes.values()):
            raise DataError(f"modalities have different numbers of samples: {sizes}")
        if n == 0:
            raise DataError("empty data: no samples")
        values, masks = {}, {}
        steps = None
        for modality in schema:
            name = modality.name
            if name not in arrays:
                continue
            array = arrays[name]
            lead = 2 if modality.sequential else 1
            if array.ndim != lead + len(modality.shape) or tuple(array.shape[lead:]) != modality.shape:
                expected = ("B, T, " if modality.sequential else "B, ") + ", ".join(map(str, modality.shape))
                raise DataError(f"modality {name!r}: expected shape ({expected.rstrip(', ')}), got {tuple(array.shape)}")
            if modality.sequential:
                if steps is not None and array.shape[1] != steps:
                    raise DataError(f"modality {name!r}: {array.shape[1]} time steps, other modalities have {steps}")
                steps = array.shape[1]
            if np.isinf(array).any():
                raise DataError(f"modality {name!r}: infinite values; use NaN for missing entries")
            mask = ~np.isnan(array)
            if name in observed:
                given = _to_mask(name, observed[name])
                if given.shape != array.shape:
                    raise DataError(f"modality {name!r}: observed mask has shape {given.shape}, values have {array.shape}")
                mask &= given
            _check_values(modality, array, mask)
            array = np.where(mask, array, 0.0)
            if modality.categorical:
                values[name] = torch.as_tensor(array, dtype=torch.long)
            else:
                values[name] = torch.as_tensor(array, dtype=torch.float32)
            masks[name] = torch.as_tensor(mask)
        for modality in schema:
            if modality.name not in values:
                shape = (n, steps) if modality.sequential else (n,)
                if modality.sequential and steps is None:
                    raise DataError(f"modality {modality.name!r}: absent, and no other modality gives the number of time steps")
                shape += modality.shape
                dtype = torch.long if modality.categorical else torch.float32
                values[modality.name] = torch.zeros(shape, dtype=dtype)
                masks[modality.name] = torch.zeros(shape, dtype=torch.bool)
        return cls(schema, values, masks)

    def __len__(self) -> int:
        return next(iter(self.values.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.values.values())).device

    def _feature_dims(self, name: str) -> tuple[int, ...]:
        modality = self.schema[name]
        lead = 2 if modality.sequential else 1
        return tuple(range(lead, lead + len(modality.shape)))

    def present(self, name: str) -> Tensor:
        """Whether modality ``name`` has any observed entry: ``[B]``, or ``[B, T]`` if sequential."""
        dims = self._feature_dims(name)
        mask = self.observed[name]
        return mask.any(dims) if dims else mask

    def presence(self) -> Tensor:
        """``[M, B]`` presence of every static modality, in schema order."""
        return torch.stack([self.present(m.name) for m in self.schema if not m.sequential])

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``, masks included."""
        return Batch(
            self.schema,
            {k: v.to(device) for k, v in self.values.items()},
            {k: m.to(device) for k, m in self.observed.items()},
        )

    def select(self, index: Tensor | slice | Sequence[int]) -> Batch:
        """The samples at ``index``."""
        return Batch(self.schema, {k: v[index] for k, v in self.values.items()}, {k: m[index] for k, m in self.observed.items()})

    def with_observed(self, observed: Mapping[str, Tensor]) -> Batch:
        """A copy whose masks are replaced for the given modalities; unobserved values become 0."""
        values, masks = dict(self.values), dict(self.observed)
        for name, mask in observed.items():
            if name not in self.schema:
                raise DataError(f"unknown modality {name!r}; the schema has {self.schema.names}")
            mask = mask.to(values[name].device, torch.bool).expand_as(values[name])
            masks[name] = mask
            values[name] = torch.where(mask, values[name], torch.zeros((), dtype=values[name].dtype, device=mask.device))
        return Batch(self.schema, values, masks)

    def without(self, *names: str) -> Batch:
        """A copy in which the named modalities are missing for every sample."""
        return self.with_observed({name: torch.zeros_like(self.observed[name]) for name in names})

    def numpy(self, nan: bool = True) -> dict[str, np.ndarray]:
        """Values as numpy arrays, with NaN in unobserved entries when ``nan``."""
        out = {}
        for name, value in self.values.items():
            array = value.detach().cpu().numpy().astype(np.float64)
            if nan:
                array[~self.observed[name].cpu().numpy()] = np.nan
            out[name] = array
        return out


def concat(batches: Sequence[Batch]) -> Batch:
    """Concatenate batches of the same schema along the sample axis."""
    first = batches[0]
    return Batch(
        first.schema,
        {k: torch.cat([b.values[k] for b in batches]) for k in first.values},
        {k: torch.cat([b.observed[k] for b in batches]) for k in first.observed},
    )
