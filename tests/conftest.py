import pytest

from transformer_rs import _native


@pytest.fixture(params=_native.available_simd_levels())
def simd_level(request):
    """Runs the test once per instruction set this CPU can run, with every
    kernel forced onto it; back to the detected one afterwards."""
    _native.force_simd_level(request.param)
    try:
        yield request.param
    finally:
        _native.force_simd_level(None)
