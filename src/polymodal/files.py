"""Files written atomically: a model folder's JSON config and safetensors weights,
checkpoints, and any JSON beside them.

This layer knows nothing of models, so models can save themselves through it and
:mod:`polymodal.persistence`, which knows the model registry, reads them back.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

FORMAT = 1
CONFIG, TENSORS = "config.json", "model.safetensors"


class ModelFileError(ValueError):
    """A saved-model folder or checkpoint that is missing, corrupt or incompatible."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to inside the block; on leaving it, the file
    is flushed to disk and renamed onto ``path``.

    A failure inside the block leaves any previous ``path`` untouched and removes the temporary
    file. A process killed while writing cannot remove its own, so temporary files of ``path``
    left by an earlier kill (``.NAME.*.tmp``) are removed first (each file polymodal writes has
    one writer: rank 0 under DDP). The file is fsynced before the
    rename and the folder after it, so that a power cut cannot leave an empty ``path``.
    A new file gets the mode that ``open`` would give it (0644 under the usual umask 022),
    an overwritten one keeps its mode: ``mkstemp``'s private 0600 would survive the rename.
    """
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _mode(path))  # last: a writer may replace the file, and a read-only mode stops the fsync
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and rename the temporary file onto ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


def replace_folder(folder: str | Path, write: Callable[[Path], Any], marks: tuple[str, ...] = (CONFIG,)) -> Path:
    """Write ``folder`` afresh: ``write(tmp)`` fills a new folder beside it, which then takes its
    place, so nothing that ``folder`` held before outlives the save (a saved folder read with
    files left by another save would mix the two). A failure inside ``write`` leaves ``folder``
    as it was. A folder that holds files but none of ``marks`` (it is not a saved folder) is
    refused, not replaced."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and
                                                    not any((folder / m).is_file() for m in marks))):
        raise ModelFileError(f"{folder} is not an empty folder nor a saved one (it has no {' or '.join(marks)}); "
                             "save into a new folder, or remove what it holds")
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{glob.escape(folder.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    _fsync_folder(folder.parent)
    return folder
def _mode(path: Path) -> int:
    """The permission bits for writing ``path``: its own if it exists, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # the only way to read the umask is to set it
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; Windows cannot open a folder, and needs no such step."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: str | Path, option: str, folder: bool = False) -> Path:
    """Refuse, before any work, an output ``path`` (a file, or a ``folder``) that cannot be
    written: a folder where a file goes or a file where a folder goes, a parent that is a
    file, or a parent folder that is not writable. ``option`` names it in the error."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise FileExistsError(f"{option} {path}: that is a {'file' if folder else 'folder'}; give a path for a "
                              f"{'folder' if folder else 'file'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{option} {path}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{option} {path}: the folder {parent} is not writable")
    return path


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
    atomic_write(folder / TENSORS, lambda p: save_file(state, str(p)))
    write_json(folder / CONFIG, config)
    return folder
