import os

# The tests' float64 NumPy references are small products; OpenBLAS's own
# threads only fight the engine under test for the cores (10x slower on a
# busy 2-core machine). Set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from transformer_rs import _native  # noqa: E402


@pytest.fixture(params=_native.available_simd_levels())
def simd_level(request):
    """Runs the test once per instruction set this CPU can run, with every
    kernel forced onto it; back to the detected one afterwards."""
    _native.force_simd_level(request.param)
    try:
        yield request.param
    finally:
        _native.force_simd_level(None)
