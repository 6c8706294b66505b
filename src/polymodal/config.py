"""Strict dataclass configs shared by the models and the trainer: unknown keys are errors."""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """A model or training config with unknown keys or invalid values."""


def make_config(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, refusing unknown keys by name.

    Lists become tuples where the field's default is a tuple, so a config read back from
    JSON equals the one that was saved."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; valid keys are {list(fields)}")
    values = {k: tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v for k, v in values.items()}
    return cls(**values)
