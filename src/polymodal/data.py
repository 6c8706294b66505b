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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .modalities import Schema


class DataError(ValueError):
    """Input data that does not match the schema."""


def _to_array(name: str, data: Any) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.detach().cpu().numpy()
    elif hasattr(data, "to_numpy"):  # pandas DataFrame or Series
        data = data.to_numpy(dtype=float, na_value=np.nan)
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"modality {name!r}: expected numbers, got {type(data).__name__} ({error})") from None


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
        numbers of samples, infinite values, categories out of range and empty data.
        """
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
                given = np.asarray(observed[name].cpu() if isinstance(observed[name], Tensor) else observed[name], dtype=bool)
                if given.shape != array.shape:
                    raise DataError(f"modality {name!r}: observed mask has shape {given.shape}, values have {array.shape}")
                mask &= given
            array = np.where(mask, array, 0.0)
            if modality.categorical:
                seen = array[mask]
                k = modality.num_classes
                bad = (seen != np.round(seen)) | (seen < 0) | (seen >= k)
                if bad.any():
                    raise DataError(
                        f"modality {name!r}: categories must be integers in [0, {k - 1}], got {seen[bad][:5].tolist()}"
                    )
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
