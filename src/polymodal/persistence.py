"""Saved models: a folder with ``config.json`` and ``model.safetensors``, no pickles.

``model.save(folder)`` writes them through :mod:`polymodal.files`: ``config.json`` holds the
model name, the modality schema, the hyperparameters and the polymodal version. :func:`load`
rebuilds the model from it through the model registry and fills in the weights.

A model trained on files (``polymodal fit``, ``Imputer.save``) also has ``transform.json``:
the fitted :class:`~polymodal.TableSchema` or :class:`~polymodal.SequenceSchema` (columns,
scales, categories), read by :func:`load_transform`.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from .files import CONFIG, FORMAT, WEIGHTS
from .modalities import Schema
from .models.base import MODELS, Model
from .tables import Transform, transform_from_config

TRANSFORM = "transform.json"


class ModelFileError(ValueError):
    """A saved-model folder that is missing, corrupt or incompatible."""


def load(folder: str | Path, device: str = "cpu") -> Model:
    """Rebuild a model saved with ``model.save(folder)``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"no saved model at {folder}: not a folder")
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise ModelFileError(f"{folder} is not a saved model: {name} is missing")
    try:
        saved = json.loads((folder / CONFIG).read_text())
        kind, schema, config, fmt = saved["model"], saved["schema"], saved["config"], saved["format"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ModelFileError(f"{folder / CONFIG} is corrupt: {error!r}") from None
    if fmt != FORMAT:
        raise ModelFileError(f"{folder} has save format {fmt}; this polymodal reads format {FORMAT}")
    if kind not in MODELS:
        raise ModelFileError(f"{folder} holds an unknown model {kind!r}; known models: {sorted(MODELS)}")
    model = MODELS[kind](Schema.from_config(schema), config)
    try:
        state = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{folder / WEIGHTS} is corrupt: {error}") from None
    missing, unexpected = model.state_dict().keys() - state.keys(), state.keys() - model.state_dict().keys()
    if missing or unexpected:
        raise ModelFileError(
            f"{folder}: weights do not fit the config (missing {sorted(missing)}, unexpected {sorted(unexpected)})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelFileError(f"{folder}: weights do not fit the config: {error}") from None
    return model.to(device).eval()


def load_transform(folder: str | Path) -> Transform:
    """The data transform saved beside a model: how its files map to modalities."""
    path = Path(folder) / TRANSFORM
    if not path.is_file():
        raise ModelFileError(f"{folder} has no {TRANSFORM}: the model was not trained on files, so it cannot read them")
    try:
        return transform_from_config(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} is corrupt: {error!r}") from None
