import pytest

import transformer_rs as tr
from transformer_rs import _native


def test_version_is_a_string():
    assert isinstance(tr.__version__, str) and tr.__version__


def test_simd_level_is_one_the_cpu_can_run():
    assert tr.simd_level() in {"avx512", "avx2", "neon", "scalar"}
    assert tr.simd_level() in _native.available_simd_levels()


def test_set_get_num_threads_roundtrip():
    before = tr.get_num_threads()
    try:
        tr.set_num_threads(1)
        assert tr.get_num_threads() == 1
        tr.set_num_threads(3)
        assert tr.get_num_threads() == 3
    finally:
        tr.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="n"):
        tr.set_num_threads(bad)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(tr.CheckpointError, ValueError)
