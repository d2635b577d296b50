"""Every bad argument of tr.ops raises the documented exception type with a
message that starts with the argument's name; the native layer re-checks
shapes, so bypassing ops.py cannot reach a kernel assertion either."""

import re

import numpy as np
import pytest

import transformer_rs as tr
from transformer_rs import _native

ops = tr.ops
f = np.ones((2, 3), np.float32)
x3 = np.ones((2, 4, 6))  # [B, T, E] with E = 6
w_in, w_out = np.ones((18, 6)), np.ones((6, 6))
b_in, b_out = np.ones(18), np.ones(6)


def mha(**changes):
    args = dict(
        query=x3,
        key=x3,
        value=x3,
        num_heads=2,
        in_proj_weight=w_in,
        in_proj_bias=b_in,
        out_proj_weight=w_out,
        out_proj_bias=b_out,
    )
    args.update(changes)
    return lambda: ops.multi_head_attention(**args)


def sdpa(**changes):
    args = dict(q=np.ones((2, 4, 8)), k=np.ones((2, 5, 8)), v=np.ones((2, 5, 3)))
    args.update(changes)
    return lambda: ops.scaled_dot_product_attention(**args)


CASES = {
    # matmul
    "matmul 0-d a": (lambda: ops.matmul(1.0, f), ValueError, "a"),
    "matmul 0-d b": (lambda: ops.matmul(f, np.float32(1)), ValueError, "b"),
    "matmul K mismatch": (lambda: ops.matmul(f, np.ones((4, 5))), ValueError, "b"),
    "matmul vector K mismatch": (lambda: ops.matmul(f, np.ones(4)), ValueError, "b"),
    "matmul batch mismatch": (
        lambda: ops.matmul(np.ones((2, 2, 3)), np.ones((3, 3, 4))),
        ValueError,
        "b",
    ),
    "matmul int a": (lambda: ops.matmul(np.ones((2, 3), int), f.T), TypeError, "a"),
    "matmul bool b": (lambda: ops.matmul(f, np.ones((3, 2), bool)), TypeError, "b"),
    "matmul complex a": (lambda: ops.matmul(f.astype(complex), f.T), TypeError, "a"),
    "matmul int list": (lambda: ops.matmul([[1, 2]], f.T), TypeError, "a"),
    "matmul strings": (lambda: ops.matmul([["x"]], f), TypeError, "a"),
    "matmul ragged": (lambda: ops.matmul([[1.0], [1.0, 2.0]], f), ValueError, "a"),
    "matmul object": (lambda: ops.matmul(f, np.array([[None]])), TypeError, "b"),
    # linear
    "linear 0-d x": (lambda: ops.linear(np.float64(1), f), ValueError, "x"),
    "linear 1-d weight": (lambda: ops.linear(f, np.ones(3)), ValueError, "weight"),
    "linear weight in mismatch": (lambda: ops.linear(f, np.ones((4, 2))), ValueError, "weight"),
    "linear bias shape": (lambda: ops.linear(f, np.ones((4, 3)), np.ones(3)), ValueError, "bias"),
    "linear 2-d bias": (
        lambda: ops.linear(f, np.ones((4, 3)), np.ones((1, 4))),
        ValueError,
        "bias",
    ),
    "linear int bias": (lambda: ops.linear(f, np.ones((4, 3)), np.ones(4, int)), TypeError, "bias"),
    "linear int x": (lambda: ops.linear(np.ones((2, 3), np.int8), np.ones((4, 3))), TypeError, "x"),
    # softmax family
    "softmax 0-d": (lambda: ops.softmax(np.float32(1)), ValueError, "axis"),
    "softmax axis too big": (lambda: ops.softmax(f, axis=2), ValueError, "axis"),
    "softmax axis too small": (lambda: ops.softmax(f, axis=-3), ValueError, "axis"),
    "softmax float axis": (lambda: ops.softmax(f, axis=1.0), TypeError, "axis"),
    "softmax bool axis": (lambda: ops.softmax(f, axis=True), TypeError, "axis"),
    "softmax int x": (lambda: ops.softmax(np.ones(3, int)), TypeError, "x"),
    "log_softmax axis": (lambda: ops.log_softmax(f, axis=5), ValueError, "axis"),
    "log_softmax bool x": (lambda: ops.log_softmax(np.ones(3, bool)), TypeError, "x"),
    # layer_norm
    "layer_norm 0-d x": (lambda: ops.layer_norm(np.float32(1), None, None), ValueError, "x"),
    "layer_norm weight shape": (
        lambda: ops.layer_norm(f, np.ones(2), np.ones(3)),
        ValueError,
        "weight",
    ),
    "layer_norm bias shape": (
        lambda: ops.layer_norm(f, np.ones(3), np.ones((1, 3))),
        ValueError,
        "bias",
    ),
    "layer_norm int weight": (
        lambda: ops.layer_norm(f, np.ones(3, int), np.ones(3)),
        TypeError,
        "weight",
    ),
    "layer_norm negative eps": (
        lambda: ops.layer_norm(f, None, None, eps=-1e-5),
        ValueError,
        "eps",
    ),
    "layer_norm nan eps": (
        lambda: ops.layer_norm(f, None, None, eps=float("nan")),
        ValueError,
        "eps",
    ),
    "layer_norm str eps": (lambda: ops.layer_norm(f, None, None, eps="1e-5"), TypeError, "eps"),
    "layer_norm int x": (lambda: ops.layer_norm(np.ones((2, 3), int), None, None), TypeError, "x"),
    # activations
    "relu int": (lambda: ops.relu(np.ones(3, np.int32)), TypeError, "x"),
    "relu bool": (lambda: ops.relu(True), TypeError, "x"),
    "gelu uint": (lambda: ops.gelu(np.ones(3, np.uint8)), TypeError, "x"),
    # scaled_dot_product_attention
    "sdpa 1-d q": (sdpa(q=np.ones(8)), ValueError, "q"),
    "sdpa 1-d k": (sdpa(k=np.ones(8)), ValueError, "k"),
    "sdpa 1-d v": (sdpa(v=np.ones(5)), ValueError, "v"),
    "sdpa k head dim": (sdpa(k=np.ones((2, 5, 7))), ValueError, "k"),
    "sdpa v length": (sdpa(v=np.ones((2, 6, 3))), ValueError, "v"),
    "sdpa k batch": (sdpa(k=np.ones((3, 5, 8))), ValueError, "k"),
    "sdpa v batch": (sdpa(v=np.ones((4, 5, 3))), ValueError, "v"),
    "sdpa int q": (sdpa(q=np.ones((2, 4, 8), int)), TypeError, "q"),
    "sdpa int mask": (sdpa(attn_mask=np.ones((4, 5), int)), TypeError, "attn_mask"),
    "sdpa mask shape": (sdpa(attn_mask=np.ones((4, 4), bool)), ValueError, "attn_mask"),
    "sdpa mask enlarges batch": (
        sdpa(attn_mask=np.ones((3, 2, 4, 5), bool)),
        ValueError,
        "attn_mask",
    ),
    "sdpa mask batch": (sdpa(attn_mask=np.ones((3, 4, 5))), ValueError, "attn_mask"),
    "sdpa int is_causal": (sdpa(is_causal=1), TypeError, "is_causal"),
    "sdpa str is_causal": (sdpa(is_causal="yes"), TypeError, "is_causal"),
    "sdpa str scale": (sdpa(scale="0.5"), TypeError, "scale"),
    "sdpa bool scale": (sdpa(scale=True), TypeError, "scale"),
    # multi_head_attention
    "mha 1-d query": (mha(query=np.ones(6)), ValueError, "query"),
    "mha 4-d query": (mha(query=np.ones((1, 2, 4, 6))), ValueError, "query"),
    "mha key rank": (mha(key=np.ones((4, 6))), ValueError, "key"),
    "mha key embed": (mha(key=np.ones((2, 4, 5)), value=np.ones((2, 4, 5))), ValueError, "key"),
    "mha key batch": (mha(key=np.ones((3, 4, 6)), value=np.ones((3, 4, 6))), ValueError, "key"),
    "mha value length": (mha(value=np.ones((2, 5, 6))), ValueError, "value"),
    "mha value rank": (mha(value=np.ones((4, 6))), ValueError, "value"),
    "mha int query": (mha(query=np.ones((2, 4, 6), int)), TypeError, "query"),
    "mha zero embed": (
        mha(query=np.ones((2, 4, 0)), key=np.ones((2, 4, 0)), value=np.ones((2, 4, 0))),
        ValueError,
        "query",
    ),
    "mha zero heads": (mha(num_heads=0), ValueError, "num_heads"),
    "mha negative heads": (mha(num_heads=-2), ValueError, "num_heads"),
    "mha heads not dividing": (mha(num_heads=4), ValueError, "num_heads"),
    "mha float heads": (mha(num_heads=2.0), TypeError, "num_heads"),
    "mha bool heads": (mha(num_heads=True), TypeError, "num_heads"),
    "mha in_proj_weight": (mha(in_proj_weight=np.ones((6, 6))), ValueError, "in_proj_weight"),
    "mha in_proj_bias": (mha(in_proj_bias=np.ones(6)), ValueError, "in_proj_bias"),
    "mha out_proj_weight": (mha(out_proj_weight=np.ones((6, 18))), ValueError, "out_proj_weight"),
    "mha out_proj_bias": (mha(out_proj_bias=np.ones(18)), ValueError, "out_proj_bias"),
    "mha int weight": (mha(out_proj_weight=np.ones((6, 6), int)), TypeError, "out_proj_weight"),
    "mha padding shape": (
        mha(key_padding_mask=np.ones((2, 5), bool)),
        ValueError,
        "key_padding_mask",
    ),
    "mha padding int": (mha(key_padding_mask=np.ones((2, 4), int)), TypeError, "key_padding_mask"),
    "mha attn_mask shape": (mha(attn_mask=np.ones((2, 4, 4), bool)), ValueError, "attn_mask"),
    "mha attn_mask 4-d": (mha(attn_mask=np.ones((2, 2, 4, 4), bool)), ValueError, "attn_mask"),
    "mha attn_mask int": (mha(attn_mask=np.ones((4, 4), int)), TypeError, "attn_mask"),
    "mha is_causal": (mha(is_causal=None), TypeError, "is_causal"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_argument_raises_naming_it(case):
    call, exception, name = case
    with pytest.raises(exception, match=rf"^{re.escape(name)}: "):
        call()


f32 = np.ones((2, 3), np.float32)
q32 = np.ones((2, 4, 8), np.float32)
kv32 = np.ones((2, 5, 8), np.float32)
x32 = np.ones((2, 4, 6), np.float32)
w_in32, w_out32 = np.ones((18, 6), np.float32), np.ones((6, 6), np.float32)


def native_mha(**changes):
    args = dict(
        query=x32,
        key=x32,
        value=x32,
        num_heads=2,
        in_proj_weight=w_in32,
        in_proj_bias=None,
        out_proj_weight=w_out32,
        out_proj_bias=None,
    )
    args.update(changes)
    return lambda: _native.multi_head_attention(**args)


NATIVE_CASES = {
    "matmul K": (lambda: _native.matmul(f32, f32), "b"),
    "matmul batch": (
        lambda: _native.matmul(np.ones((2, 2, 3), np.float32), np.ones((3, 3, 2), np.float32)),
        "b",
    ),
    "linear 0-d": (lambda: _native.linear(np.ones((), np.float32), f32), "x"),
    "linear weight": (lambda: _native.linear(f32, f32.T.copy()), "weight"),
    "linear bias": (
        lambda: _native.linear(f32, np.ones((4, 3), np.float32), np.ones(3, np.float32)),
        "bias",
    ),
    "softmax 0-d": (lambda: _native.softmax(np.ones((), np.float32)), "x"),
    "log_softmax 0-d": (lambda: _native.log_softmax(np.ones((), np.float32)), "x"),
    "layer_norm weight": (
        lambda: _native.layer_norm(f32, np.ones(2, np.float32), np.ones(3, np.float32), 1e-5),
        "weight",
    ),
    "layer_norm bias": (
        lambda: _native.layer_norm(f32, np.ones(3, np.float32), np.ones(4, np.float32), 1e-5),
        "bias",
    ),
    "sdpa q 1-d": (
        lambda: _native.scaled_dot_product_attention(np.ones(8, np.float32), kv32, kv32),
        "q",
    ),
    "sdpa k dim": (lambda: _native.scaled_dot_product_attention(q32, f32, f32), "k"),
    "sdpa v len": (lambda: _native.scaled_dot_product_attention(q32, kv32, q32), "v"),
    "sdpa batch": (
        lambda: _native.scaled_dot_product_attention(q32, np.ones((3, 5, 8), np.float32), kv32),
        "k",
    ),
    "sdpa mask cols": (
        lambda: _native.scaled_dot_product_attention(q32, kv32, kv32, np.ones((4, 4), np.float32)),
        "attn_mask",
    ),
    "sdpa mask rows": (
        lambda: _native.scaled_dot_product_attention(q32, kv32, kv32, np.ones((3, 5), np.float32)),
        "attn_mask",
    ),
    "sdpa mask 1-d": (
        lambda: _native.scaled_dot_product_attention(q32, kv32, kv32, np.ones(5, np.float32)),
        "attn_mask",
    ),
    "sdpa mask batch": (
        lambda: _native.scaled_dot_product_attention(
            q32, kv32, kv32, np.ones((3, 1, 5), np.float32)
        ),
        "attn_mask",
    ),
    "mha query 2-d": (native_mha(query=f32), "query"),
    "mha key": (native_mha(key=np.ones((2, 5, 4), np.float32)), "key"),
    "mha value": (native_mha(value=np.ones((2, 5, 6), np.float32)), "value"),
    "mha zero E": (
        native_mha(
            query=np.ones((2, 4, 0), np.float32),
            key=np.ones((2, 4, 0), np.float32),
            value=np.ones((2, 4, 0), np.float32),
        ),
        "query",
    ),
    "mha zero heads": (native_mha(num_heads=0), "num_heads"),
    "mha heads not dividing": (native_mha(num_heads=4), "num_heads"),
    "mha in weight": (native_mha(in_proj_weight=w_out32), "in_proj_weight"),
    "mha in bias": (native_mha(in_proj_bias=np.ones(6, np.float32)), "in_proj_bias"),
    "mha out weight": (native_mha(out_proj_weight=w_in32), "out_proj_weight"),
    "mha out bias": (native_mha(out_proj_bias=np.ones(18, np.float32)), "out_proj_bias"),
    "mha mask 2-d": (native_mha(attn_mask=np.ones((4, 4), np.float32)), "attn_mask"),
    "mha mask heads": (native_mha(attn_mask=np.ones((1, 3, 4, 4), np.float32)), "attn_mask"),
    "mha mask keys": (native_mha(attn_mask=np.ones((1, 1, 4, 5), np.float32)), "attn_mask"),
}


@pytest.mark.parametrize("case", NATIVE_CASES.values(), ids=NATIVE_CASES.keys())
def test_native_layer_rechecks_shapes(case):
    call, name = case
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}: "):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: _native.relu(np.ones((3, 4), np.float32)[:, ::2]),  # not contiguous
        lambda: _native.softmax(np.ones((3, 4), np.float32).T),  # Fortran order
        lambda: _native.linear(np.ones((2, 2), np.float32), [[1.0]]),  # not an array
        lambda: _native.multi_head_attention(x32, x32, x32, -1, w_in32, None, w_out32, None),
    ],
)
def test_native_layer_rejects_unconverted_arrays_without_crashing(call):
    with pytest.raises((TypeError, ValueError, OverflowError)):
        call()


@pytest.mark.parametrize(
    "a, b",
    [
        (np.ones(3, np.float32), np.ones((3, 2), np.float32)),  # 1-D
        (np.ones((2, 3)), np.ones((3, 2), np.float32)),  # float64
        (np.ones((2, 3), np.float32), np.ones((2, 3), np.float32).T),  # Fortran order
        (np.ones((2, 3), np.float32), [[1.0], [2.0], [3.0]]),  # not an array
        (np.ones((2, 3), np.float32).astype(">f4"), np.ones((3, 2), np.float32)),  # big-endian
    ],
)
def test_native_matmul_hands_back_what_it_needs_converted(a, b):
    # ops.matmul converts these and calls again; None, never a wrong product.
    assert _native.matmul(a, b) is None
    expected = np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))
    np.testing.assert_allclose(ops.matmul(a, b), expected, rtol=1e-6)


def test_absurd_broadcast_shapes_raise_instead_of_overflowing():
    a = np.ones((2**31, 1, 3, 0), np.float32)
    b = np.ones((1, 2**31, 0, 2), np.float32)
    with pytest.raises(ValueError, match="too big"):
        ops.matmul(a, b)
