"""Files written atomically: a model folder's JSON config and safetensors weights, and
any JSON beside them.

This layer knows nothing of models, so models can save themselves through it and
:mod:`polymodal.persistence`, which knows the model registry, reads them back.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

FORMAT = 1
CONFIG, WEIGHTS = "config.json", "model.safetensors"


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
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


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path``, atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2)))
    return Path(path)


def write_folder(folder: str | Path, config: dict[str, Any], state: dict[str, Tensor]) -> Path:
    """Write ``config`` (plus the save format and library version) as JSON and ``state`` as
    safetensors into ``folder``, created if needed."""
    from . import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    config = {"format": FORMAT, "polymodal": __version__, **config}
    atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p)))
    write_json(folder / CONFIG, config)
    return folder
