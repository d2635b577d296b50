"""softmax, log_softmax, layer_norm, relu, gelu against the NumPy reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import transformer_rs as tr
from ops_helpers import (
    OPS_SETTINGS,
    call_unmodified,
    check_output,
    dtypes,
    layouts,
    relayout,
    seeds,
    seen,
)
from transformer_rs import reference as ref

# The float64 reference warns on empty rows (mean of nothing) and on gelu(-inf)
# (-inf * 0); those cases are compared anyway.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

shapes = st.lists(st.integers(0, 9), min_size=1, max_size=4).map(tuple)


def random_input(data, shape, scale=1.0):
    rng = np.random.default_rng(data.draw(seeds))
    return relayout(scale * rng.standard_normal(shape), data.draw(dtypes), data.draw(layouts))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@OPS_SETTINGS
@given(data=st.data())
def test_softmax_family_matches_reference(simd_level, name, data):
    shape = data.draw(shapes)
    x = random_input(data, shape, scale=data.draw(st.sampled_from([1.0, 30.0])))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))

    out = call_unmodified(getattr(tr.ops, name), x, axis=axis)

    # float32 rounds x - max(x) by ~eps·|x|: the absolute error of a
    # log-probability grows with the magnitude of its row.
    magnitude = 1.0 + np.max(np.abs(seen(x)), axis=axis, keepdims=True, initial=0.0)
    check_output(out, getattr(ref, name)(seen(x), axis=axis), atol=1e-6, scale=magnitude)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_is_stable_for_huge_values(simd_level, name):
    x = np.array(
        [
            [1e30, -1e30, 0.0, 5.0],
            [-1e30, -1e30, -1e30, -1e30],
            [1e30, 1e30, -1e30, 1e30],
            [1e38, -1e38, 1.0, 2.0],
            [-1e30, 1.0, 2.0, 3.0],
        ],
        dtype=np.float32,
    )
    out = getattr(tr.ops, name)(x)
    assert np.isfinite(out).all()
    # Entries 1e30 below the maximum: log-probability ~ -1e30, checked relatively.
    check_output(out, getattr(ref, name)(x), atol=1e-6)
    if name == "softmax":
        check_output(out.sum(axis=-1), np.ones(len(x)), atol=1e-6)


def test_softmax_over_an_empty_axis_and_size_one_rows():
    assert tr.ops.softmax(np.ones((3, 0))).shape == (3, 0)
    assert tr.ops.softmax(np.ones((0, 4)), axis=0).shape == (0, 4)
    check_output(tr.ops.softmax(np.full((2, 1), 7.0)), np.ones((2, 1)), atol=0)
    check_output(tr.ops.log_softmax(np.full((2, 1), 7.0)), np.zeros((2, 1)), atol=0)


@OPS_SETTINGS
@given(data=st.data())
def test_layer_norm_matches_reference(simd_level, data):
    shape = data.draw(shapes)
    e = shape[-1]
    x = random_input(data, shape, scale=data.draw(st.sampled_from([1.0, 100.0])))
    weight = random_input(data, (e,)) if data.draw(st.booleans()) else None
    bias = random_input(data, (e,)) if data.draw(st.booleans()) else None
    eps = data.draw(st.sampled_from([1e-5, 1e-12, 0.1]))

    out = call_unmodified(tr.ops.layer_norm, x, weight, bias, eps=eps)

    w = None if weight is None else seen(weight)
    b = None if bias is None else seen(bias)
    scale = 1.0 + (0 if w is None else np.abs(w)) + (0 if b is None else np.abs(b))
    check_output(out, ref.layer_norm(seen(x), w, b, eps=eps), atol=1e-5, scale=scale)


def test_layer_norm_constant_rows_give_bias(simd_level):
    x = np.full((3, 5), 2.5, np.float32)
    weight = np.arange(5, dtype=np.float32)
    bias = np.linspace(-1, 1, 5).astype(np.float32)
    check_output(tr.ops.layer_norm(x, weight, bias), np.broadcast_to(bias, (3, 5)), atol=1e-7)


def test_layer_norm_default_eps_is_1e_5():
    x = np.array([[0.0, 1e-3]])  # var = 2.5e-7: eps dominates the denominator
    one, zero = np.ones(2), np.zeros(2)
    check_output(
        tr.ops.layer_norm(x, one, zero), ref.layer_norm(seen(x), one, zero, 1e-5), atol=1e-6
    )


@pytest.mark.parametrize("name", ["relu", "gelu"])
@OPS_SETTINGS
@given(data=st.data())
def test_activations_match_reference(simd_level, name, data):
    shape = tuple(data.draw(st.lists(st.integers(0, 9), max_size=4)))
    x = random_input(data, shape, scale=data.draw(st.sampled_from([1.0, 10.0])))

    out = call_unmodified(getattr(tr.ops, name), x)

    check_output(out, getattr(ref, name)(seen(x)), atol=1e-6)


@pytest.mark.parametrize("name", ["relu", "gelu"])
def test_activations_on_special_values_and_large_arrays(simd_level, name):
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 8.0, -8.0, 3e38, -3e38], np.float32)
    check_output(getattr(tr.ops, name)(special), getattr(ref, name)(special), atol=1e-6)
    # Past one parallel chunk, with a tail that is not a multiple of any SIMD width.
    big = np.random.default_rng(2).standard_normal(3 * 16384 + 7).astype(np.float32) * 4
    check_output(getattr(tr.ops, name)(big), getattr(ref, name)(big), atol=1e-6)


def test_activations_of_infinities(simd_level):
    inf = np.array([np.inf, -np.inf], np.float32)
    np.testing.assert_array_equal(tr.ops.relu(inf), [np.inf, 0.0])
    plus, minus = tr.ops.gelu(inf)
    assert plus == np.inf  # inf * Phi(inf) = inf, as torch
    # torch computes -inf * Phi(-inf) = -inf * 0 = NaN; the limit is 0. Either will do.
    assert np.isnan(minus) or minus == 0.0
