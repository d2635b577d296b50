"""Pickling support shared by the model classes.

A model loaded from a checkpoint folder pickles as the folder's path plus a
fingerprint of the files it read (inode, size, modification time): unpickling
loads (memory-maps) the folder again, so no weights go through the pickle
(a pipe to each worker, for multiprocessing). If the files changed since the model was loaded, it
pickles by value instead, so a pickle always holds the weights the model
computes with; and unpickling by path refuses a folder whose files changed
since pickling (``tr.CheckpointError``) rather than load other weights.
Models built in memory pickle by value (see ``Transformer.__reduce__``).

A model class reuses this by capturing ``FolderOrigin.of(path, files)`` before
loading and keeping it on the instance; ``__reduce__`` returns
``origin.reduce(cls)`` when ``origin.unchanged()``, else a by-value form, or,
for a model that has none, ``reduce_by_path(model, origin)``, which refuses
to pickle a model whose files changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import tempfile

import numpy as np

from ._native import CheckpointError

__all__ = ["FolderOrigin", "read_safetensors", "reduce_by_path", "saved_files"]


Fingerprint = tuple[tuple[str, int, int, int], ...]


def _fingerprint(path: str, files: tuple[str, ...]) -> Fingerprint:
    """(name, inode, size, mtime_ns) of each of ``files`` under ``path``;
    (name, -1, -1, -1) for one that does not exist (optional files)."""
    out = []
    for name in files:
        try:
            st = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            out.append((name, -1, -1, -1))
            continue
        out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class FolderOrigin:
    """The checkpoint folder a model was loaded from, as it was then."""

    path: str
    """Absolute path of the folder."""
    fingerprint: Fingerprint
    """(file name relative to ``path``, inode, size, mtime_ns) of each file
    the loader reads (or may read)."""

    @classmethod
    def of(cls, path: str | os.PathLike[str], files: tuple[str, ...]) -> FolderOrigin | None:
        """The origin of a model about to be loaded from ``path``, or ``None``
        if the files cannot be examined (loading then fails on its own)."""
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


def reduce_by_path(model, origin: FolderOrigin | None) -> tuple:
    """``__reduce__`` of a model that can only be rebuilt by loading its
    folder again (it has no by-value form): its origin's ``reduce``, or
    ``pickle.PicklingError`` if its files changed since it was loaded."""
    name = type(model).__name__
    if origin is None:
        raise pickle.PicklingError(f"this {name} was not loaded from a folder")
    if not origin.unchanged():
        raise pickle.PicklingError(
            f"{origin.path}: the files of this {name} changed since it was loaded, so "
            "loading the folder again would give other weights; load it again to pickle it"
        )
    return origin.reduce(type(model))


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
