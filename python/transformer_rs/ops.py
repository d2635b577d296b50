"""Kernels on NumPy arrays: ``tr.ops``. Float inputs of any dtype and strides;
results are new C-contiguous float32 arrays. (Being written.)"""

from __future__ import annotations

import numpy as np

from . import _native

__all__ = ["relu"]


def relu(x) -> np.ndarray:
    """``max(x, 0)`` element-wise."""
    return _native.relu(np.ascontiguousarray(x, dtype=np.float32))
