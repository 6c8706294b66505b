"""Strict dataclass configs shared by the models and the trainer: unknown keys and bad values
are errors.

A config class is decorated with :func:`checked`, which gives it a ``__post_init__`` that
checks every field against its type hint (``epochs=2.5`` or ``"3"`` for an ``int`` is
refused, a JSON list becomes the tuple a ``tuple`` field holds) and against the class's
declarative ``limits`` (a :class:`Range`, a range or words (:class:`OrWords`), or a tuple of
allowed values per field; a range applies to each element of a tuple or list and each value
of a dict). So a config is checked however it is built: keywords, a dict from JSON through
:func:`make_config`, or directly.

YAML configs are read with :func:`read_yaml`, which takes every spelling of a float
(``1e-3``, ``1E5``, ``.5``), where PyYAML's YAML 1.1 rules read ``1e-3`` as text.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml


class ConfigError(ValueError):
    """A model or training config with unknown keys or invalid values."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with the floats YAML 1.1 leaves as text: an exponent without a
    dot (``1e-3``) or without a sign (``1.0e3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def read_yaml(text: str) -> Any:
    """Parsed YAML (safe: plain data only), every float spelling a float."""
    return yaml.load(text, Loader=_Loader)


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high``; ``open_low`` / ``open_high`` exclude the ends."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        above = x > self.low if self.open_low else x >= self.low
        below = x < self.high if self.open_high else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


@dataclass(frozen=True)
class OrWords:
    """Numbers within ``range``, or one of the ``words`` (such as ``weights="auto"``)."""

    range: Range
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.range} or one of {list(self.words)}"


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1)
# The likelihood weights lambda_m of a model's config: non-negative numbers by modality name,
# or "auto" (each modality's log-likelihood scaled by the square root of the largest modality's
# entries over its own).
WEIGHTS = OrWords(NON_NEGATIVE, ("auto",))
Weights = dict[str, float] | str


def checked(**limits: Range | OrWords | tuple) -> Any:
    """Class decorator for a config dataclass: check types and ``limits`` after ``__init__``.

    Applied below ``@dataclass``, so that the ``__init__`` it generates calls the check; a
    subclass adds to its parent's limits, and a ``__post_init__`` of the class itself runs
    after the checks."""

    def decorate(cls: type) -> type:
        cls.limits = {**getattr(cls, "limits", {}), **limits}
        own = cls.__dict__.get("__post_init__")

        def __post_init__(self) -> None:
            check(self)
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__
        return cls

    return decorate


def check(config: Any) -> None:
    """Check (and normalise) the fields of dataclass instance ``config``; raise :class:`ConfigError`."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(config, f.name)
        hint = hints[f.name]
        ok, value = _conform(value, hint)
        if not ok:
            raise ConfigError(f"{cls.__name__}: {f.name} must be {_describe(hint)}, got {value!r}")
        limit = getattr(cls, "limits", {}).get(f.name)
        if limit is not None:
            bad = _outside(value, limit)
            if bad is not None:
                expected = f"one of {list(limit)}" if isinstance(limit, tuple) else str(limit)
                where = "" if bad is value else f" (element {bad!r})"
                raise ConfigError(f"{cls.__name__}: {f.name} must be {expected}, got {value!r}{where}")
        object.__setattr__(config, f.name, value)


def _conform(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits type ``hint``, and the value normalised (lists to tuples for a
    tuple, numpy scalars to Python numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            ok, normal = _conform(value, arm)
            if ok:
                return True, normal
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        boolean = isinstance(value, (bool, np.bool_))
        return boolean, bool(value) if boolean else value
    if hint is int:
        return _is_int(value), int(value) if _is_int(value) else value
    if hint is float:
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return real, float(value) if real else value
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False, value
        arm = args[0] if args else Any
        items = [_conform(v, arm) for v in value]
        if not all(ok for ok, _ in items):
            return False, value
        return True, (tuple if origin is tuple else list)(v for _, v in items)
    if origin is dict:
        if not isinstance(value, Mapping):
            return False, value
        key, arm = args or (Any, Any)
        items = [(_conform(k, key), _conform(v, arm)) for k, v in value.items()]
        if not all(k[0] and v[0] for k, v in items):
            return False, value
        return True, {k[1]: v[1] for k, v in items}
    return isinstance(value, hint) if isinstance(hint, type) else True, value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return f"{'an' if hint.__name__[0] in 'aeiou' else 'a'} {hint.__name__}"
    return f"a {hint}"


def _outside(value: Any, limit: Range | OrWords | tuple) -> Any:
    """The value (or the element of it) that breaks ``limit``, or None."""
    if value is None:
        return None
    if isinstance(limit, OrWords):
        if isinstance(value, str):
            return None if value in limit.words else value
        return _outside(value, limit.range)
    if isinstance(limit, tuple):
        return None if value in limit else value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return next((v for v in value if _outside(v, limit) is not None), None)
    return None if value in limit else value


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
    """Instantiate dataclass ``cls`` from ``values``, refusing unknown keys by name (and, for a
    :func:`checked` class, values of the wrong type or out of range).

    ``where`` names the place of ``values`` in the errors (default: the class name). Lists
    become tuples where the field's default is a tuple, so a config read back from JSON
    equals the one that was saved."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(values, fields, where or cls.__name__)
    values = {k: tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v for k, v in values.items()}
    return cls(**values)
