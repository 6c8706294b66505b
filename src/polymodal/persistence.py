"""Saved models: a folder with ``config.json`` and ``model.safetensors``, no pickles.

``model.save(folder)`` writes them through :mod:`polymodal.files`: ``config.json`` holds the
model name, the modality schema, the hyperparameters and the polymodal version. :func:`load`
rebuilds the model from it through the model registry and fills in the weights.

A folder written by a newer polymodal than this one is refused, naming the version that wrote
it (its options or modules may mean something this version does not know); older versions of
the same save format load.

A model trained on files (``polymodal fit``, ``Imputer.save``) also has ``transform.json``:
the fitted :class:`~polymodal.TableSchema` or :class:`~polymodal.SequenceSchema` (columns,
scales, categories), read by :func:`load_transform`.

Both check what they read: weights that are not finite, scales that are not positive,
categories and modalities that do not match the model's config are refused with a
:class:`ModelFileError` naming the file, before a model or transform is used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from . import __version__
from .config import ConfigError
from .data import DataError
from .files import CONFIG, FORMAT, TENSORS, ModelFileError
from .modalities import Schema
from .models.base import MODELS, Model, Seen
from .tables import Transform, transform_from_config

TRANSFORM = "transform.json"

__all__ = ["ModelFileError", "load", "read_folder"]


def _release(version: str) -> tuple[int, ...]:
    """``"0.10.2rc1"`` -> ``(0, 10, 2)``: the leading number of each dotted part."""
    return tuple(int(re.match(r"\d*", part).group() or 0) for part in version.split("."))


def read_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The saved config and tensors of a folder written by :func:`~polymodal.files.write_folder`,
    checked: both files present and readable, this save format, and not from a newer polymodal."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"no saved model at {folder}: not a folder")
    for name in (CONFIG, TENSORS):
        if not (folder / name).is_file():
            raise ModelFileError(f"{folder} is not a saved model: {name} is missing")
    saved = read_json(folder / CONFIG)
    try:
        fmt, version = saved["format"], str(saved["polymodal"])
    except (KeyError, TypeError) as error:
        raise ModelFileError(f"{folder / CONFIG} is corrupt: {error!r}") from None
    if fmt != FORMAT:
        raise ModelFileError(f"{folder} has save format {fmt}; this polymodal reads format {FORMAT}")
    if _release(version) > _release(__version__):
        raise ModelFileError(
            f"{folder / CONFIG} was written by polymodal {version}, newer than this polymodal {__version__}; "
            "upgrade polymodal to load it"
        )
    try:
        state = load_file(str(folder / TENSORS))
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{folder / TENSORS} is corrupt: {error}") from None
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise ModelFileError(f"{folder / TENSORS}: weights {broken[:5]} hold NaN or infinite values (a run that diverged, "
                             "or a damaged file); train the model again")
    return saved, state


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; anything else is a :class:`ModelFileError` naming the file."""
    try:
        saved = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path} is corrupt: {error!r}") from None
    if not isinstance(saved, dict):
        raise ModelFileError(f"{path} is corrupt: expected a JSON object, got {type(saved).__name__}")
    return saved


def load(folder: str | Path, device: str = "cpu") -> Model:
    """Rebuild a model saved with ``model.save(folder)``."""
    folder = Path(folder)
    saved, state = read_folder(folder)
    try:
        kind, schema, config = saved["model"], saved["schema"], saved["config"]
        seen = saved.get("seen")  # what the training data observed; folders of older versions lack it
        seen = None if seen is None else Seen(dict(seen["counts"]), int(seen["complete"]))
    except (KeyError, TypeError) as error:
        raise ModelFileError(f"{folder / CONFIG} is corrupt: {error!r}") from None
    if kind not in MODELS:
        raise ModelFileError(f"{folder} holds an unknown model {kind!r}; known models: {sorted(MODELS)}")
    try:
        model = MODELS[kind](Schema.from_config(schema), config)
    except (ConfigError, TypeError, ValueError, KeyError) as error:
        raise ModelFileError(f"{folder / CONFIG}: the {kind} model it describes cannot be built: {error}") from None
    missing, unexpected = model.state_dict().keys() - state.keys(), state.keys() - model.state_dict().keys()
    if missing or unexpected:
        raise ModelFileError(
            f"{folder}: weights do not fit the config (missing {sorted(missing)}, unexpected {sorted(unexpected)})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelFileError(f"{folder}: weights do not fit the config: {error}") from None
    model.seen = seen
    return model.to(device).eval()


def load_transform(folder: str | Path) -> Transform:
    """The data transform saved beside a model: how its files map to modalities. Its values
    are checked, and its modalities against those of the model's ``config.json`` beside it."""
    path = Path(folder) / TRANSFORM
    if not path.is_file():
        raise ModelFileError(f"{folder} has no {TRANSFORM}: the model was not trained on files, so it cannot read them")
    try:
        transform = transform_from_config(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        message = str(error) if isinstance(error, DataError) else f"{type(error).__name__}: {error}"
        raise ModelFileError(f"{path} is damaged, or was not written by polymodal: {message}") from None
    saved = Path(folder) / CONFIG
    if saved.is_file():
        try:
            schema = Schema.from_config(json.loads(saved.read_text())["schema"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{saved} is corrupt: {error!r}") from None
        if schema != transform.schema_:
            raise ModelFileError(f"{path} does not fit the model beside it: its modalities {transform.schema_.config()} "
                                 f"differ from those of {CONFIG} {schema.config()}")
    return transform
