"""Kernels on NumPy arrays: ``tr.ops``.

Every function accepts arrays (or anything ``np.asarray`` takes) of any real
float dtype (float16, float32, float64) and any strides. Compute is float32 in
the Rust kernels, with the GIL released; each result is a new C-contiguous
float32 array. Arguments are never modified. Bad shapes or values raise
``ValueError``, bad types ``TypeError``; the message names the argument and
what was expected.

This module validates and converts; ``transformer_rs._native`` computes.
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

from . import _native

__all__ = [
    "gelu",
    "layer_norm",
    "linear",
    "log_softmax",
    "matmul",
    "multi_head_attention",
    "relu",
    "scaled_dot_product_attention",
    "softmax",
]


# --- argument conversion -----------------------------------------------------


def _array(x, name: str) -> np.ndarray:
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: cannot convert to an array: {e}") from e


def _is_c_float32(x) -> bool:
    """Whether ``x`` goes to the native code as it is: a C-contiguous float32
    ndarray (the common case, checked without the general checks' cost)."""
    return type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous


def _float32(x, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array; no copy if it already is one."""
    if _is_c_float32(x):
        return x
    arr = _array(x, name)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{name}: expected a float array (float16, float32 or float64), got dtype {arr.dtype}"
        )
    return np.asarray(arr, dtype=np.float32, order="C")


def _additive_mask(mask, name: str, *, true_blocks: bool) -> np.ndarray:
    """A bool or float mask as a float32 mask added to the attention scores.

    A bool mask becomes 0 where attending is allowed and -inf where it is not;
    ``true_blocks`` says which of the two ``True`` means.
    """
    arr = _array(mask, name)
    if arr.dtype == np.bool_:
        blocked = arr if true_blocks else ~arr
        return np.where(blocked, np.float32(-np.inf), np.float32(0.0))
    if np.issubdtype(arr.dtype, np.floating):
        return np.asarray(arr, dtype=np.float32)
    raise TypeError(f"{name}: expected a bool or float mask, got dtype {arr.dtype}")


def _flag(value, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")


def _int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None


def _real(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    return float(value)


def _shape(shape) -> str:
    return str(tuple(shape))


def _broadcast_batch(*operands: tuple[str, tuple[int, ...]]) -> tuple[int, ...]:
    """NumPy broadcast of the named batch shapes; the error names the first
    operand that does not fit the ones before it."""
    first_name, batch = operands[0]
    for name, shape in operands[1:]:
        try:
            batch = np.broadcast_shapes(batch, shape)
        except ValueError:
            raise ValueError(
                f"{name}: batch shape {_shape(shape)} does not broadcast with "
                f"{first_name}'s batch shape {_shape(batch)}"
            ) from None
    return tuple(batch)


def _vector(x, name: str, length: int, what: str) -> np.ndarray:
    arr = _float32(x, name)
    if arr.shape != (length,):
        raise ValueError(f"{name}: expected shape [{length}] ({what}), got {_shape(arr.shape)}")
    return arr


# --- ops ---------------------------------------------------------------------


def matmul(a, b) -> np.ndarray:
    """Matrix product with ``np.matmul`` semantics.

    ``a [..., M, K] @ b [..., K, N] -> [..., M, N]``; the batch axes ``...``
    broadcast. A 1-D ``a`` is a row vector ``[1, K]`` and a 1-D ``b`` a column
    vector ``[K, 1]``, their added axis removed from the result (1-D @ 1-D
    gives a 0-d array). ``K = 0`` gives zeros.
    """
    # The common case, C-contiguous float32 matrices, is the native call
    # alone: it checks the shapes and the broadcasting itself, with the same
    # messages, and returns None for anything it needs converted first.
    out = _native.matmul(a, b)
    if out is not None:
        return out
    a = _float32(a, "a")
    b = _float32(b, "b")
    for name, arr in (("a", a), ("b", b)):
        if arr.ndim == 0:
            raise ValueError(f"{name}: expected at least 1 dimension, got a 0-d array")
    k = a.shape[-1]
    if b.ndim == 1 and b.shape[0] != k:
        raise ValueError(
            f"b: expected shape [{k}] to match a's last axis {k}, got {_shape(b.shape)}"
        )
    if b.ndim > 1 and b.shape[-2] != k:
        raise ValueError(
            f"b: expected shape [..., {k}, N] to match a's last axis {k}, got {_shape(b.shape)}"
        )
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    if a2.ndim > 2 or b2.ndim > 2:
        _broadcast_batch(("a", a2.shape[:-2]), ("b", b2.shape[:-2]))
    out = _native.matmul(a2, b2)
    if a.ndim == 1:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = out.reshape(out.shape[:-1])
    return out


def linear(x, weight, bias=None) -> np.ndarray:
    """``x @ weight.T + bias``, as ``torch.nn.functional.linear``.

    ``x [..., in_features]``, ``weight [out_features, in_features]`` (PyTorch
    layout; read transposed in place, never copied), ``bias [out_features]``
    or None. Returns ``[..., out_features]``.
    """
    x = _float32(x, "x")
    weight = _float32(weight, "weight")
    if x.ndim == 0:
        raise ValueError("x: expected shape [..., in_features], got a 0-d array")
    in_features = x.shape[-1]
    if weight.ndim != 2 or weight.shape[1] != in_features:
        raise ValueError(
            f"weight: expected shape [out_features, {in_features}] to match x's last axis, "
            f"got {_shape(weight.shape)}"
        )
    if bias is not None:
        bias = _vector(bias, "bias", weight.shape[0], "out_features")
    return _native.linear(x, weight, bias)


def _along_axis(row_op, x, axis) -> np.ndarray:
    """Applies ``row_op`` (a last-axis kernel) along ``axis`` of ``x``."""
    x = _float32(x, "x")
    axis = _int(axis, "axis")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"axis: expected an axis of the {x.ndim}-d x, in [{-x.ndim}, {x.ndim}), got {axis}"
        )
    axis %= x.ndim
    if axis == x.ndim - 1:
        return row_op(x)
    rows = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    return np.ascontiguousarray(np.moveaxis(row_op(rows), -1, axis))


def softmax(x, axis=-1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis`` (any axis, negative counts from
    the end). Numerically stable for any finite input, e.g. rows holding
    values of +-1e30."""
    return _along_axis(_native.softmax, x, axis)


def log_softmax(x, axis=-1) -> np.ndarray:
    """``x - log(sum(exp(x)))`` along ``axis``; numerically stable for any
    finite input."""
    return _along_axis(_native.log_softmax, x, axis)


def layer_norm(x, weight, bias, eps=1e-5) -> np.ndarray:
    """Layer normalisation over the last axis of ``x [..., E]``:
    ``(x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance,
    as ``torch.nn.functional.layer_norm(x, [E], weight, bias, eps)``.

    ``weight`` and ``bias`` are ``[E]``; None means ones and zeros (no affine).
    """
    x = _float32(x, "x")
    if x.ndim == 0:
        raise ValueError("x: expected shape [..., E], got a 0-d array")
    e = x.shape[-1]
    what = "x's last axis E"
    weight = np.ones(e, np.float32) if weight is None else _vector(weight, "weight", e, what)
    bias = np.zeros(e, np.float32) if bias is None else _vector(bias, "bias", e, what)
    eps = _real(eps, "eps")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: expected a finite number >= 0, got {eps}")
    return _native.layer_norm(x, weight, bias, eps)


def relu(x) -> np.ndarray:
    """``max(x, 0)`` element-wise."""
    return _native.relu(_float32(x, "x"))


def gelu(x) -> np.ndarray:
    """``x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`` element-wise: the exact
    form of ``torch.nn.functional.gelu`` (not the tanh approximation)."""
    return _native.gelu(_float32(x, "x"))


def scaled_dot_product_attention(
    q, k, v, attn_mask=None, is_causal=False, scale=None
) -> np.ndarray:
    """``softmax(q @ k^T * scale + mask) @ v``, as
    ``torch.nn.functional.scaled_dot_product_attention``.

    ``q [..., Tq, D]``, ``k [..., Tk, D]``, ``v [..., Tk, Dv]`` -> ``[..., Tq, Dv]``;
    the batch axes ``...`` broadcast. ``scale`` defaults to ``1/sqrt(D)``.

    ``attn_mask`` broadcasts to ``[..., Tq, Tk]``: bool, ``True`` = may attend
    (PyTorch's convention), or float, added to the scores. ``is_causal=True``
    lets query ``i`` see keys ``j <= i`` only; combined with ``attn_mask``,
    a key must pass both. A query that may attend to no key gets a row of
    zeros (PyTorch gives NaN there).
    """
    q = _float32(q, "q")
    k = _float32(k, "k")
    v = _float32(v, "v")
    for name, arr, what in (
        ("q", q, "[..., Tq, D]"),
        ("k", k, "[..., Tk, D]"),
        ("v", v, "[..., Tk, Dv]"),
    ):
        if arr.ndim < 2:
            raise ValueError(f"{name}: expected shape {what}, got {_shape(arr.shape)}")
    tq, d = q.shape[-2:]
    tk = k.shape[-2]
    if k.shape[-1] != d:
        raise ValueError(
            f"k: expected shape [..., Tk, {d}] to match q's last axis D = {d}, "
            f"got {_shape(k.shape)}"
        )
    if v.shape[-2] != tk:
        raise ValueError(
            f"v: expected shape [..., {tk}, Dv] to match k's Tk = {tk}, got {_shape(v.shape)}"
        )
    batch = _broadcast_batch(("q", q.shape[:-2]), ("k", k.shape[:-2]), ("v", v.shape[:-2]))
    is_causal = _flag(is_causal, "is_causal")
    if scale is not None:
        scale = _real(scale, "scale")
    mask = None
    if attn_mask is not None:
        mask = _additive_mask(attn_mask, "attn_mask", true_blocks=False)
        target = batch + (tq, tk)
        try:
            fits = np.broadcast_shapes(mask.shape, target) == target
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"attn_mask: expected a shape that broadcasts to [..., Tq, Tk] = {_shape(target)}, "
                f"got {_shape(mask.shape)}"
            )
        # The kernel reads one dense mask row per query (or one row shared by
        # all queries): give the mask its two matrix axes and a dense key axis.
        mask = mask.reshape((1,) * (2 - mask.ndim) + mask.shape)
        mask = np.ascontiguousarray(np.broadcast_to(mask, mask.shape[:-1] + (tk,)))
    return _native.scaled_dot_product_attention(q, k, v, mask, is_causal, scale)


def multi_head_attention(
    query,
    key,
    value,
    num_heads,
    in_proj_weight,
    in_proj_bias,
    out_proj_weight,
    out_proj_bias,
    key_padding_mask=None,
    attn_mask=None,
    is_causal=False,
) -> np.ndarray:
    """The forward pass of ``torch.nn.MultiheadAttention(E, num_heads,
    batch_first=True)`` (no dropout, attention weights not returned).

    ``query [B, Tq, E]``, ``key [B, Tk, E]``, ``value [B, Tk, E]`` ->
    ``[B, Tq, E]``; unbatched ``[T, E]`` inputs give ``[Tq, E]``, as in PyTorch.
    Weights use PyTorch's packed layout: ``in_proj_weight [3E, E]`` is
    Wq; Wk; Wv stacked, ``in_proj_bias [3E]``, ``out_proj_weight [E, E]``,
    ``out_proj_bias [E]`` (a bias may be None, as with ``bias=False``). Each of
    the ``num_heads`` heads attends over ``E / num_heads`` columns with scale
    ``1/sqrt(E / num_heads)``.

    Masks follow ``torch.nn.MultiheadAttention``, NOT
    ``scaled_dot_product_attention``: in both masks a bool ``True`` means
    "may NOT attend"; a float mask is added to the scores.

    - ``key_padding_mask [B, Tk]``: ``True`` = that key is padding, ignore it.
    - ``attn_mask [Tq, Tk]`` (shared) or ``[B * num_heads, Tq, Tk]`` (item
      ``b * num_heads + h`` for batch item ``b``, head ``h``).
    - ``is_causal=True`` lets query ``i`` see keys ``j <= i`` only. Unlike
      PyTorch (where it is a hint that ``attn_mask`` is causal, and requires
      one), it applies the causal mask itself, combined with any other mask.

    A query that may attend to no key gets a zero attention output, so its
    result is ``out_proj_bias`` (PyTorch gives NaN there).
    """
    q = _float32(query, "query")
    # Keeping identical inputs identical lets the kernel project them once
    # (self-attention: one [3E, E] GEMM; key is value: one [2E, E] GEMM).
    k = q if key is query else _float32(key, "key")
    v = k if value is key else q if value is query else _float32(value, "value")
    if q.ndim not in (2, 3):
        raise ValueError(
            f"query: expected shape [B, Tq, E] (batch first) or [Tq, E] (unbatched), "
            f"got {_shape(q.shape)}"
        )
    unbatched = q.ndim == 2
    for name, arr in (("key", k), ("value", v)):
        if arr.ndim != q.ndim:
            raise ValueError(
                f"{name}: expected a {q.ndim}-d array like query {_shape(q.shape)}, "
                f"got {_shape(arr.shape)}"
            )
    if k.shape[:-2] != q.shape[:-2] or k.shape[-1] != q.shape[-1]:
        want = "[Tk, E] with" if unbatched else f"[B, Tk, E] with B = {q.shape[0]} and"
        raise ValueError(
            f"key: expected shape {want} E = {q.shape[-1]} like query, got {_shape(k.shape)}"
        )
    if v.shape != k.shape:
        raise ValueError(f"value: expected shape {_shape(k.shape)} like key, got {_shape(v.shape)}")
    if unbatched:
        q, k, v = q[np.newaxis], k[np.newaxis], v[np.newaxis]
    b, tq, e = q.shape
    tk = k.shape[1]
    num_heads = _int(num_heads, "num_heads")
    if num_heads <= 0:
        raise ValueError(f"num_heads: expected a positive number of heads, got {num_heads}")
    if e == 0:
        raise ValueError("query: expected a positive embed dim E, got 0")
    if e % num_heads:
        raise ValueError(
            f"num_heads: embed dim E = {e} is not divisible by num_heads = {num_heads}"
        )

    def matrix(x, name, rows, what):
        arr = _float32(x, name)
        if arr.shape != (rows, e):
            raise ValueError(
                f"{name}: expected shape {what} = {_shape((rows, e))}, got {_shape(arr.shape)}"
            )
        return arr

    w_in = matrix(in_proj_weight, "in_proj_weight", 3 * e, "[3E, E]")
    w_out = matrix(out_proj_weight, "out_proj_weight", e, "[E, E]")
    b_in = None if in_proj_bias is None else _vector(in_proj_bias, "in_proj_bias", 3 * e, "3E")
    b_out = None if out_proj_bias is None else _vector(out_proj_bias, "out_proj_bias", e, "E")
    is_causal = _flag(is_causal, "is_causal")

    # Both masks merge into one additive mask [B or 1, H or 1, Tq or 1, Tk].
    mask = None
    if key_padding_mask is not None:
        padding = _additive_mask(key_padding_mask, "key_padding_mask", true_blocks=True)
        want = (tk,) if unbatched else (b, tk)
        if padding.shape != want:
            raise ValueError(
                f"key_padding_mask: expected shape [B, Tk] = {_shape(want)}, "
                f"got {_shape(padding.shape)}"
            )
        mask = padding.reshape(b, 1, 1, tk)
    if attn_mask is not None:
        scores_mask = _additive_mask(attn_mask, "attn_mask", true_blocks=True)
        if scores_mask.shape == (tq, tk):
            scores_mask = scores_mask.reshape(1, 1, tq, tk)
        elif scores_mask.shape == (b * num_heads, tq, tk):
            scores_mask = scores_mask.reshape(b, num_heads, tq, tk)
        else:
            raise ValueError(
                f"attn_mask: expected shape [Tq, Tk] = {_shape((tq, tk))} or "
                f"[B * num_heads, Tq, Tk] = {_shape((b * num_heads, tq, tk))}, "
                f"got {_shape(scores_mask.shape)}"
            )
        mask = scores_mask if mask is None else mask + scores_mask
    if mask is not None:
        mask = np.ascontiguousarray(mask, dtype=np.float32)
    out = _native.multi_head_attention(
        q, k, v, num_heads, w_in, b_in, w_out, b_out, mask, is_causal
    )
    return out[0] if unbatched else out
