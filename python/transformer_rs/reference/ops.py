"""Pure-NumPy reference of every ``tr.ops`` op, in float64, written for
clarity rather than speed: the oracle the kernel tests compare against.

Same names, arguments and conventions as ``tr.ops`` (see its docstrings);
no argument validation beyond what NumPy itself does. Results are float64.
"""

from __future__ import annotations

import math

import numpy as np

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


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def matmul(a, b) -> np.ndarray:
    """``np.matmul`` in float64 (always an array, 0-d for vector @ vector)."""
    return np.asarray(np.matmul(_f64(a), _f64(b)))


def linear(x, weight, bias=None) -> np.ndarray:
    """``x @ weight.T + bias``; ``weight [out_features, in_features]``."""
    y = _f64(x) @ _f64(weight).T
    if bias is not None:
        y = y + _f64(bias)
    return y


def softmax(x, axis=-1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis``, shifted by the row maximum so
    that no exponent overflows."""
    x = _f64(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True, initial=-np.inf))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1) -> np.ndarray:
    """``x - log(sum(exp(x)))`` along ``axis``, shifted by the row maximum."""
    x = _f64(x)
    shifted = x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def layer_norm(x, weight, bias, eps=1e-5) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis,
    biased variance; None weight / bias mean ones / zeros."""
    x = _f64(x)
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * _f64(weight)
    if bias is not None:
        y = y + _f64(bias)
    return y


def relu(x) -> np.ndarray:
    """``max(x, 0)``."""
    return np.maximum(_f64(x), 0.0)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x) -> np.ndarray:
    """``0.5 * x * (1 + erf(x / sqrt(2)))``, the exact GELU."""
    x = _f64(x)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _softmax_or_zeros(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, except that a row where every score is
    -inf (nothing may be attended) becomes zeros instead of NaN."""
    top = np.max(scores, axis=-1, keepdims=True, initial=-np.inf)
    empty = top == -np.inf
    e = np.exp(scores - np.where(empty, 0.0, top))
    total = np.sum(e, axis=-1, keepdims=True)
    return np.where(empty, 0.0, e / np.where(empty, 1.0, total))


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """``softmax(q @ k^T * scale + mask) @ v``; ``q [..., Tq, D]``,
    ``k [..., Tk, D]``, ``v [..., Tk, Dv]``, batch axes broadcast.

    Bool ``attn_mask``: True = may attend; float: added. ``is_causal``: query
    ``i`` sees keys ``j <= i``. ``scale`` defaults to ``1/sqrt(D)`` (1 if D = 0,
    when every score is 0). A query that may attend to nothing gets zeros.
    """
    q, k, v = _f64(q), _f64(k), _f64(v)
    tq, d = q.shape[-2:]
    tk = k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(d) if d > 0 else 1.0
    scores = (q @ np.swapaxes(k, -1, -2)) * scale
    if is_causal:
        allowed = np.tril(np.ones((tq, tk), dtype=bool))
        scores = np.where(allowed, scores, -np.inf)
    if attn_mask is not None:
        attn_mask = np.asarray(attn_mask)
        if attn_mask.dtype == np.bool_:
            scores = np.where(attn_mask, scores, -np.inf)
        else:
            scores = scores + _f64(attn_mask)
    return _softmax_or_zeros(scores) @ v


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
):
    """``torch.nn.MultiheadAttention``'s forward, batch first: ``[B, T, E]``
    in, ``[B, Tq, E]`` out (unbatched ``[T, E]`` also accepted).

    Masks follow torch.nn.MultiheadAttention: bool ``True`` = may NOT attend,
    float = added. ``key_padding_mask [B, Tk]``; ``attn_mask [Tq, Tk]`` or
    ``[B * num_heads, Tq, Tk]``; ``is_causal``: query ``i`` sees keys ``j <= i``.
    A query that may attend to nothing gets a zero attention output.
    """
    query, key, value = _f64(query), _f64(key), _f64(value)
    unbatched = query.ndim == 2
    if unbatched:
        query, key, value = query[None], key[None], value[None]
        if key_padding_mask is not None:
            key_padding_mask = np.asarray(key_padding_mask)[None]
    b, tq, e = query.shape
    tk = key.shape[1]
    h = num_heads
    d = e // h

    w_q, w_k, w_v = np.split(_f64(in_proj_weight), 3)
    b_q, b_k, b_v = (None, None, None) if in_proj_bias is None else np.split(_f64(in_proj_bias), 3)

    def heads(x, w, bias):  # [B, T, E] -> [B, H, T, D]
        projected = linear(x, w, bias)
        return projected.reshape(b, x.shape[1], h, d).transpose(0, 2, 1, 3)

    q, k, v = heads(query, w_q, b_q), heads(key, w_k, b_k), heads(value, w_v, b_v)

    def additive(mask):  # torch.nn.MultiheadAttention: True = may not attend
        mask = np.asarray(mask)
        return np.where(mask, -np.inf, 0.0) if mask.dtype == np.bool_ else _f64(mask)

    mask = np.zeros((b, h, tq, tk))
    if key_padding_mask is not None:
        mask = mask + additive(key_padding_mask).reshape(b, 1, 1, tk)
    if attn_mask is not None:
        extra = additive(attn_mask)
        mask = mask + (extra if extra.ndim == 2 else extra.reshape(b, h, tq, tk))

    context = scaled_dot_product_attention(q, k, v, mask, is_causal)  # [B, H, Tq, D]
    context = context.transpose(0, 2, 1, 3).reshape(b, tq, e)
    out = linear(context, out_proj_weight, out_proj_bias)
    return out[0] if unbatched else out
