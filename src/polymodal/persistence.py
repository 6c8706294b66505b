"""Saved models: a folder with ``config.json`` and ``model.safetensors``, no pickles.

``model.save(folder)`` writes them through :mod:`polymodal.files`: ``config.json`` holds the
model name, the modality schema, the hyperparameters and the polymodal version. :func:`load`
rebuilds the model from it through the model registry and fills in the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from .files import CONFIG, FORMAT, TENSORS
from .modalities import Schema
from .models.base import MODELS, Model


class ModelFileError(ValueError):
    """A saved-model folder that is missing, corrupt or incompatible."""


def load(folder: str | Path, device: str = "cpu") -> Model:
    """Rebuild a model saved with ``model.save(folder)``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"no saved model at {folder}: not a folder")
    for name in (CONFIG, TENSORS):
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
        state = load_file(str(folder / TENSORS))
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{folder / TENSORS} is corrupt: {error}") from None
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
