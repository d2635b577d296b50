"""Pickling support shared by the model classes.

A model loaded from a checkpoint folder pickles as the folder's path plus a
fingerprint of the files it read (inode, size, modification time): unpickling
loads (memory-maps) the folder again, which is fast and lets worker processes
share the OS page cache. If the files changed since the model was loaded, it
pickles by value instead, so a pickle always holds the weights the model
computes with; and unpickling by path refuses a folder whose files changed
since pickling (``tr.CheckpointError``) rather than load other weights.
Models built in memory pickle by value (see ``Transformer.__reduce__``).

A model class reuses this by capturing ``FolderOrigin.of(path, files)`` before
loading, keeping it on the instance, and returning ``origin.reduce(cls)`` from
``__reduce__`` when ``origin.unchanged()``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import numpy as np

from ._native import CheckpointError

__all__ = ["FolderOrigin", "read_safetensors", "saved_files"]


def _fingerprint(path: str, files: tuple[str, ...]) -> tuple[tuple[str, int, int, int], ...]:
    """(name, inode, size, mtime_ns) of each of ``files`` under ``path``."""
    out = []
    for name in files:
        st = os.stat(os.path.join(path, name))
        out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class FolderOrigin:
    """The checkpoint folder a model was loaded from, as it was then."""

    path: str
    """Absolute path of the folder."""
    fingerprint: tuple[tuple[str, int, int, int], ...]
    """(file name, inode, size, mtime_ns) of each file the loader reads."""

    @classmethod
    def of(cls, path: str | os.PathLike[str], files: tuple[str, ...]) -> FolderOrigin | None:
        """The origin of a model about to be loaded from ``path``, or ``None``
        if a file is missing (loading then fails with its own error)."""
        path = os.path.abspath(os.fspath(path))
        try:
            return cls(path, _fingerprint(path, files))
        except OSError:
            return None

    def unchanged(self) -> bool:
        """Whether every file is still the one the model was loaded from."""
        files = tuple(name for name, *_ in self.fingerprint)
        try:
            return _fingerprint(self.path, files) == self.fingerprint
        except OSError:
            return False

    def reduce(self, cls: type) -> tuple:
        """``__reduce__`` value that loads ``cls`` from this folder again."""
        return (_load_from_origin, (cls, self))


def _load_from_origin(cls: type, origin: FolderOrigin):
    """Unpickles a model pickled by path: ``cls.load(origin.path)``, after
    checking the folder holds the same files (same inode, size, mtime)."""
    if not os.path.isdir(origin.path):
        raise FileNotFoundError(
            f"{origin.path}: checkpoint folder of a pickled {cls.__name__} not found "
            "(models loaded from disk pickle as their folder's path)"
        )
    if not origin.unchanged():
        raise CheckpointError(
            f"{origin.path}: the checkpoint files changed since this {cls.__name__} "
            "was pickled; refusing to load different weights"
        )
    return cls.load(origin.path)


def saved_files(model) -> dict[str, bytes]:
    """The files ``model.save(folder)`` writes, by name, read back as bytes."""
    with tempfile.TemporaryDirectory(prefix="transformer_rs_pickle_") as folder:
        model.save(folder)
        out = {}
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = f.read()
        return out


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file's bytes, as read-only views
    of ``data`` (written by ``save``, so trusted: F32 only)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise CheckpointError(f"tensor `{name}`: expected dtype F32, got {info['dtype']}")
        start, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=8 + n + start)
        # Safetensors pads its header to 8 bytes, so this copies nothing.
        tensors[name] = np.require(arr, requirements="A").reshape(info["shape"])
    return tensors
