import os
import subprocess
import sys

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


def _default_threads(env_overrides):
    """tr.get_num_threads() in a fresh interpreter with the given variables
    (None removes one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update({k: v for k, v in env_overrides.items() if v is not None})
    out = subprocess.run(
        [sys.executable, "-c", "import transformer_rs as tr; print(tr.get_num_threads())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


@pytest.mark.parametrize(
    ("rayon", "omp", "expected"),
    [
        ("3", None, 3),
        (None, "5", 5),
        ("3", "5", 3),  # RAYON_NUM_THREADS first
        ("0", "4", 4),  # not a positive count: the next variable decides
        ("lots", "2", 2),
    ],
)
def test_thread_count_environment_variables(rayon, omp, expected):
    assert _default_threads({"RAYON_NUM_THREADS": rayon, "OMP_NUM_THREADS": omp}) == expected


def test_default_thread_count_is_the_usable_cores():
    assert _default_threads({}) == len(os.sched_getaffinity(0))
