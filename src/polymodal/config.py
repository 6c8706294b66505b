"""Strict dataclass configs shared by the models and the trainer: unknown keys are errors."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A model or training config with unknown keys or invalid values."""


def check_keys(keys: Iterable[str], valid: Iterable[str], where: str, what: str = "keys") -> None:
    """Raise :class:`ConfigError` if any of ``keys`` is not in ``valid``, saying ``where`` it
    is, the valid ones and the one nearest the first unknown; ``what`` names them."""
    valid = list(valid)
    unknown = [k for k in keys if k not in valid]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), valid, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else "."
        raise ConfigError(f"{where}: unknown {what} {sorted(unknown, key=str)}{hint} Valid {what} are {valid}")


def make_config(cls: type, values: dict[str, Any], where: str | None = None) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, refusing unknown keys by name.

    ``where`` names the place of ``values`` in the errors (default: the class name). Lists
    become tuples where the field's default is a tuple, so a config read back from JSON
    equals the one that was saved."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(values, fields, where or cls.__name__)
    values = {k: tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v for k, v in values.items()}
    return cls(**values)
