"""scaled_dot_product_attention and multi_head_attention against the NumPy
reference, including masks, causality and rows that may attend to nothing."""

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

lengths = st.integers(0, 9)


def mask_shape(data, target):
    """A shape that broadcasts to ``target``: a suffix of it, some axes 1."""
    ndim = data.draw(st.integers(0, len(target)))
    return tuple(d if data.draw(st.booleans()) else 1 for d in target[len(target) - ndim :])


def random_mask(data, rng, shape, kind):
    if kind == "bool":
        # Sparse enough that whole rows are often fully masked.
        return rng.random(shape) < data.draw(st.sampled_from([0.2, 0.6, 1.0]))
    mask = rng.standard_normal(shape)
    mask[rng.random(shape) < 0.3] = -np.inf
    return relayout(mask, data.draw(dtypes), data.draw(layouts))


@OPS_SETTINGS
@given(data=st.data())
def test_sdpa_matches_reference(simd_level, data):
    q_batch, k_batch, v_batch = data.draw(broadcast_batches(operands=3))
    tq, tk, d, dv = (data.draw(lengths) for _ in range(4))
    rng = np.random.default_rng(data.draw(seeds))

    def make(shape):
        return relayout(rng.standard_normal(shape), data.draw(dtypes), data.draw(layouts))

    q, k, v = make(q_batch + (tq, d)), make(k_batch + (tk, d)), make(v_batch + (tk, dv))
    batch = np.broadcast_shapes(q_batch, k_batch, v_batch)
    kind = data.draw(st.sampled_from([None, "bool", "float"]))
    mask = (
        None if kind is None else random_mask(data, rng, mask_shape(data, batch + (tq, tk)), kind)
    )
    is_causal = data.draw(st.booleans())
    scale = data.draw(st.sampled_from([None, 0.3, 2.0]))

    out = call_unmodified(
        tr.ops.scaled_dot_product_attention,
        q,
        k,
        v,
        attn_mask=mask,
        is_causal=is_causal,
        scale=scale,
    )

    m = None if mask is None or mask.dtype == np.bool_ else seen(mask)
    m = mask if mask is not None and mask.dtype == np.bool_ else m
    expected = ref.scaled_dot_product_attention(seen(q), seen(k), seen(v), m, is_causal, scale)
    # Weights sum to at most 1, so |out| <= max |v|; score errors scale with |q||k|.
    magnitude = 1.0 + np.abs(seen(v)).max(initial=0.0) * (1.0 + d)
    check_output(out, expected, atol=2e-5, scale=magnitude)


def test_sdpa_fully_masked_rows_give_zeros(simd_level):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 4, 8)).astype(np.float32) for _ in range(3))
    mask = np.ones((2, 4, 4), bool)
    mask[0, 1] = False  # query 1 of item 0 may attend to nothing
    mask[1, :, :] = False  # nothing in item 1 may attend
    out = tr.ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    check_output(out[0, 1], np.zeros(8), atol=0)
    check_output(out[1], np.zeros((4, 8)), atol=0)
    check_output(
        out[0, [0, 2, 3]], ref.scaled_dot_product_attention(q, k, v)[0, [0, 2, 3]], atol=1e-5
    )
    float_mask = np.where(mask, 0.0, -np.inf)
    check_output(tr.ops.scaled_dot_product_attention(q, k, v, float_mask), out, atol=0)
    empty = tr.ops.scaled_dot_product_attention(q, k[:, :0], v[:, :0])  # no keys at all
    check_output(empty, np.zeros((2, 4, 8)), atol=0)


def test_sdpa_causal_equals_lower_triangular_mask(simd_level):
    rng = np.random.default_rng(4)
    q = rng.standard_normal((3, 5, 8)).astype(np.float32)
    k, v = (rng.standard_normal((3, 7, 8)).astype(np.float32) for _ in range(2))
    causal = tr.ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    tril = np.tril(np.ones((5, 7), bool))
    check_output(causal, tr.ops.scaled_dot_product_attention(q, k, v, attn_mask=tril), atol=1e-6)
    check_output(causal, ref.scaled_dot_product_attention(q, k, v, tril), atol=1e-5)
    # Query 0 sees key 0 only: its output is v's row 0.
    check_output(np.ascontiguousarray(causal[:, 0]), v[:, 0], atol=1e-6)


def test_sdpa_default_scale_is_inverse_sqrt_d():
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((4, 16)) for _ in range(3))
    check_output(
        tr.ops.scaled_dot_product_attention(q, k, v),
        tr.ops.scaled_dot_product_attention(q, k, v, scale=0.25),
        atol=1e-7,
    )


def mha_weights(rng, e, with_in_bias, with_out_bias):
    w_in = rng.standard_normal((3 * e, e)) / np.sqrt(e)
    b_in = rng.standard_normal(3 * e) if with_in_bias else None
    w_out = rng.standard_normal((e, e)) / np.sqrt(e)
    b_out = rng.standard_normal(e) if with_out_bias else None
    return w_in, b_in, w_out, b_out


@OPS_SETTINGS
@given(data=st.data())
def test_mha_matches_reference(simd_level, data):
    b, tq, tk = data.draw(st.integers(0, 3)), data.draw(lengths), data.draw(lengths)
    h, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    e = h * d
    rng = np.random.default_rng(data.draw(seeds))
    sharing = data.draw(st.sampled_from(["self", "key is value", "distinct"]))
    unbatched = b == 1 and data.draw(st.booleans())

    def make(shape):
        return relayout(rng.standard_normal(shape), data.draw(dtypes), data.draw(layouts))

    lead = () if unbatched else (b,)
    query = make(lead + (tq, e))
    if sharing == "self":
        key = value = query
        tk = tq
    else:
        key = make(lead + (tk, e))
        value = key if sharing == "key is value" else make(lead + (tk, e))
    w_in, b_in, w_out, b_out = mha_weights(
        rng, e, data.draw(st.booleans()), data.draw(st.booleans())
    )

    padding_kind = data.draw(st.sampled_from([None, "bool", "float"]))
    key_padding_mask = None
    if padding_kind is not None:
        key_padding_mask = random_mask(data, rng, lead + (tk,), padding_kind)
    attn_kind = data.draw(st.sampled_from([None, "bool", "float"]))
    attn_mask = None
    if attn_kind is not None:
        per_head = data.draw(st.booleans())
        shape = ((b * h,) if per_head else ()) + (tq, tk)
        attn_mask = random_mask(data, rng, shape, attn_kind)
    is_causal = data.draw(st.booleans())

    args = (query, key, value, h, w_in, b_in, w_out, b_out)
    out = call_unmodified(
        tr.ops.multi_head_attention,
        *args,
        key_padding_mask=key_padding_mask,
        attn_mask=attn_mask,
        is_causal=is_causal,
    )

    def kernel_view(m):
        return m if m is None or m.dtype == np.bool_ else seen(m)

    expected = ref.multi_head_attention(
        *(seen(a) if isinstance(a, np.ndarray) else a for a in args),
        key_padding_mask=kernel_view(key_padding_mask),
        attn_mask=kernel_view(attn_mask),
        is_causal=is_causal,
    )
    magnitude = 1.0 + np.abs(expected).max(initial=0.0) + 10 * np.abs(seen(value)).max(initial=0.0)
    check_output(out, expected, atol=2e-5, scale=magnitude)


def test_mha_masks_follow_torch_multihead_attention(simd_level):
    """key_padding_mask / bool attn_mask True = may NOT attend (the opposite
    of scaled_dot_product_attention's bool mask), shown on one head whose
    projections are identities."""
    rng = np.random.default_rng(6)
    e = 4
    eye = np.eye(e)
    w_in, w_out = np.concatenate([eye, eye, eye]), eye
    query, memory = rng.standard_normal((2, 3, e)), rng.standard_normal((2, 5, e))
    padding = np.zeros((2, 5), bool)
    padding[0, 3:] = True
    blocked = np.zeros((3, 5), bool)
    blocked[:, 0] = True

    out = tr.ops.multi_head_attention(
        query,
        memory,
        memory,
        1,
        w_in,
        None,
        w_out,
        None,
        key_padding_mask=padding,
        attn_mask=blocked,
    )

    allowed = ~padding[:, None, :] & ~blocked[None]
    expected = ref.scaled_dot_product_attention(query, memory, memory, attn_mask=allowed)
    check_output(out, expected, atol=1e-5)
    assert not np.allclose(out, ref.scaled_dot_product_attention(query, memory, memory), atol=1e-3)


def test_mha_query_attending_to_nothing_gives_out_proj_bias(simd_level):
    rng = np.random.default_rng(7)
    e = 6
    w_in, b_in, w_out, b_out = mha_weights(rng, e, True, True)
    x = rng.standard_normal((2, 4, e))
    padding = np.zeros((2, 4), bool)
    padding[1] = True
    out = tr.ops.multi_head_attention(
        x, x, x, 2, w_in, b_in, w_out, b_out, key_padding_mask=padding
    )
    check_output(out[1], np.broadcast_to(b_out, (4, e)), atol=1e-6)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("h", [1, 2, 8])
def test_mha_larger_than_kernel_tiles(simd_level, h):
    rng = np.random.default_rng(h)
    e = 64
    w_in, b_in, w_out, b_out = mha_weights(rng, e, True, True)
    x, memory = rng.standard_normal((2, 37, e)), rng.standard_normal((2, 29, e))
    for key in (x, memory):
        out = tr.ops.multi_head_attention(x, key, key, h, w_in, b_in, w_out, b_out, is_causal=True)
        expected = ref.multi_head_attention(
            *(seen(a) for a in (x, key, key)),
            h,
            *(seen(a) for a in (w_in, b_in, w_out, b_out)),
            is_causal=True,
        )
        check_output(out, expected, atol=1e-5, scale=1 + np.abs(expected))
