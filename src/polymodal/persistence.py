"""Saved models: a folder with ``config.json`` and ``model.safetensors``, no pickles.

``config.json`` holds the model name, the modality schema, the hyperparameters and the
polymodal version; :func:`load` rebuilds the model from it through the model registry and
fills in the weights. Both files are written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .modalities import Schema
from .models.base import MODELS, Model

FORMAT = 1
CONFIG, WEIGHTS = "config.json", "model.safetensors"


class ModelFileError(ValueError):
    """A saved-model folder that is missing, corrupt or incompatible."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``.

    A failure while writing leaves any previous ``path`` untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_config(model: Model) -> dict[str, Any]:
    from . import __version__

    return {
        "format": FORMAT,
        "polymodal": __version__,
        "model": model.name,
        "schema": model.schema.config(),
        "config": dataclasses.asdict(model.config),
    }


def save(model: Model, folder: str | Path) -> Path:
    """Write ``model`` to ``folder`` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p)))
    atomic_write(folder / CONFIG, lambda p: p.write_text(json.dumps(model_config(model), indent=2)))
    return folder


def load(folder: str | Path, device: str = "cpu") -> Model:
    """Rebuild a model saved with :func:`save` (or ``model.save``)."""
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
