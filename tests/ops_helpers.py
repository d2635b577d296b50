"""Shared pieces of the tr.ops tests: hypothesis settings, input layouts and
dtypes, and the checks every op result must pass."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# One fixture instance (one forced ISA) serves all examples of a test.
OPS_SETTINGS = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DTYPES = (np.float32, np.float64, np.float16)
LAYOUTS = ("c", "fortran", "strided", "reversed")

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)
layouts = st.sampled_from(LAYOUTS)


@st.composite
def broadcast_batches(draw, operands=2, max_ndim=3):
    """Batch shapes of ``operands`` arrays that broadcast together: each is
    a suffix of one output batch shape, some axes set to 1."""
    out = draw(st.lists(st.integers(0, 3), max_size=max_ndim))
    shapes = []
    for _ in range(operands):
        ndim = draw(st.integers(0, len(out)))
        shapes.append(tuple(d if draw(st.booleans()) else 1 for d in out[len(out) - ndim :]))
    return shapes


def relayout(x: np.ndarray, dtype, layout: str) -> np.ndarray:
    """The values of ``x`` cast to ``dtype``, in a memory layout: C order,
    Fortran order, every other element of a larger buffer, or negative
    strides. Only "c" is C-contiguous (for arrays of 2+ elements)."""
    x = np.asarray(x).astype(dtype)
    if layout == "c" or x.ndim == 0:
        return x.copy()
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided":
        big = np.zeros(tuple(2 * s for s in x.shape), dtype)
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if layout == "reversed":
        flipped = tuple(slice(None, None, -1) for _ in x.shape)
        return x[flipped].copy()[flipped]
    raise ValueError(layout)


def seen(x) -> np.ndarray:
    """What the kernels compute on: the input rounded to float32."""
    return np.asarray(x, dtype=np.float32)


def check_output(out, expected, *, rtol=1e-4, atol=1e-6, scale=None):
    """``out`` is a new C-contiguous float32 array of ``expected``'s shape
    whose every element is within ``rtol * |expected| + atol * scale`` (scale:
    per-element magnitude of the terms summed, default 1) of ``expected``."""
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    expected = np.asarray(expected, dtype=np.float64)
    assert out.shape == expected.shape, (out.shape, expected.shape)
    bound = rtol * np.abs(expected) + atol * (1.0 if scale is None else scale)
    error = np.abs(out.astype(np.float64) - expected)
    bad = ~(error <= bound)  # NaN in out counts as bad
    assert not bad.any(), (
        f"{bad.sum()} of {out.size} elements off; worst at {np.argwhere(bad)[0]}: "
        f"got {out[bad][0]}, expected {expected[bad][0]}"
    )


def call_unmodified(fn, *args, **kwargs):
    """Calls ``fn`` and asserts that no array argument was modified and that
    the result shares no memory with any of them."""
    arrays = [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    out = fn(*args, **kwargs)
    for a, b in zip(arrays, before):
        assert np.array_equal(a, b, equal_nan=True), "an input was modified"
        assert not np.shares_memory(out, a), "the result aliases an input"
    return out
