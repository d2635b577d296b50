"""tr.ops.matmul and tr.ops.linear against the NumPy reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import transformer_rs as tr
from ops_helpers import (
    OPS_SETTINGS,
    broadcast_batches,
    call_unmodified,
    check_output,
    dtypes,
    layouts,
    relayout,
    seeds,
    seen,
)
from transformer_rs import reference as ref

sizes = st.integers(0, 17)


def random_input(data, rng, shape):
    return relayout(rng.standard_normal(shape), data.draw(dtypes), data.draw(layouts))


@OPS_SETTINGS
@given(data=st.data())
def test_matmul_matches_reference(simd_level, data):
    a_batch, b_batch = data.draw(broadcast_batches())
    m, k, n = data.draw(sizes), data.draw(sizes), data.draw(sizes)
    a_vector = not a_batch and data.draw(st.booleans())
    b_vector = not b_batch and data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(seeds))
    a = random_input(data, rng, (k,) if a_vector else a_batch + (m, k))
    b = random_input(data, rng, (k,) if b_vector else b_batch + (k, n))

    out = call_unmodified(tr.ops.matmul, a, b)

    expected = ref.matmul(seen(a), seen(b))
    check_output(out, expected, atol=1e-5, scale=ref.matmul(np.abs(seen(a)), np.abs(seen(b))))


@pytest.mark.parametrize("mkn", [(1, 1, 1), (7, 13, 5), (33, 65, 17), (64, 64, 64), (67, 129, 31)])
def test_matmul_sizes_across_tiles(simd_level, mkn):
    m, k, n = mkn
    rng = np.random.default_rng(m * k * n)
    a = rng.standard_normal((3, m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    check_output(tr.ops.matmul(a, b), ref.matmul(a, b), atol=1e-5, scale=ref.matmul(abs(a), abs(b)))
    b3 = rng.standard_normal((3, k, n)).astype(np.float32)
    check_output(
        tr.ops.matmul(a, b3), ref.matmul(a, b3), atol=1e-5, scale=ref.matmul(abs(a), abs(b3))
    )


def test_matmul_empty_and_zero_k():
    assert tr.ops.matmul(np.ones((2, 0, 3)), np.ones((3, 4))).shape == (2, 0, 4)
    assert tr.ops.matmul(np.ones((0, 2, 3)), np.ones((1, 3, 4))).shape == (0, 2, 4)
    zeros = tr.ops.matmul(np.ones((2, 3, 0)), np.ones((0, 5)))
    check_output(zeros, np.zeros((2, 3, 5)), atol=0)
    check_output(tr.ops.matmul(np.ones(0), np.ones(0)), np.zeros(()), atol=0)


def test_matmul_vector_promotion_shapes():
    rng = np.random.default_rng(0)
    cases = [((4,), (4,)), ((4,), (4, 3)), ((2, 5, 4), (4,)), ((4,), (2, 4, 3)), ((3, 4), (4,))]
    for a_shape, b_shape in cases:
        a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
        expected = ref.matmul(seen(a), seen(b))
        check_output(tr.ops.matmul(a, b), expected, atol=1e-5, scale=ref.matmul(abs(a), abs(b)))


def test_matmul_accepts_lists_and_read_only_arrays():
    a = np.arange(6.0).reshape(2, 3)
    a.flags.writeable = False
    check_output(tr.ops.matmul(a, [[1.0], [2.0], [3.0]]), [[8.0], [26.0]], atol=0)


@OPS_SETTINGS
@given(data=st.data())
def test_linear_matches_reference(simd_level, data):
    batch = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2)))
    in_features, out_features = data.draw(sizes), data.draw(sizes)
    rng = np.random.default_rng(data.draw(seeds))
    x = random_input(data, rng, batch + (in_features,))
    weight = random_input(data, rng, (out_features, in_features))
    bias = random_input(data, rng, (out_features,)) if data.draw(st.booleans()) else None

    out = call_unmodified(tr.ops.linear, x, weight, bias)

    expected = ref.linear(seen(x), seen(weight), None if bias is None else seen(bias))
    scale = ref.linear(
        np.abs(seen(x)), np.abs(seen(weight)), None if bias is None else np.abs(seen(bias))
    )
    check_output(out, expected, atol=1e-5, scale=scale)


def test_linear_default_bias_is_none_and_keyword_names():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    check_output(tr.ops.linear(x, w), ref.linear(seen(x), seen(w)), atol=1e-5, scale=10)
    check_output(
        tr.ops.linear(x=x, weight=w, bias=b),
        ref.linear(seen(x), seen(w), seen(b)),
        atol=1e-5,
        scale=10,
    )
