"""Pure-NumPy (float64) reference of the encoder-decoder Transformer.

It computes exactly what the PyTorch tutorial's ``Seq2SeqTransformer`` (see
CHECKPOINT.md) computes, one readable step at a time, and it is the oracle the
tests hold ``tr.Transformer`` to: encoder memory, decoder logits, greedy
decoding (a full re-run of the decoder per new token) and the log-probability
of any continuation (to check beam-search scores).

Shape key: B batch, S source length, T target length, E model width (d_model),
H heads, D head dim (E / H), F d_ff, V vocabulary.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "Transformer",
    "load_safetensors",
    "parameter_shapes",
    "random_state_dict",
    "save_safetensors",
    "sinusoidal_positions",
]

# ----------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header, raw bytes.

_FLOAT_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}
_WRITE_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("float64"): "F64",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
}


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the upper half of a float32: shift the 16 bits back up."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 (ties to even), as torch does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def load_safetensors(
    path: str | os.PathLike, skip_unsupported: bool = False
) -> dict[str, np.ndarray]:
    """Read a safetensors file into float32 NumPy arrays (F32, F16 and BF16
    are widened). Raises ValueError for any other dtype, or skips those
    tensors with ``skip_unsupported`` (e.g. BERT's int64 ``position_ids``)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte safetensors header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        raise ValueError(f"{path}: header length {header_len} runs past the end of the file")
    header = json.loads(blob[8 : 8 + header_len].decode("utf-8"))
    data = memoryview(blob)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        raw = data[start:end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2")
            array = _bf16_bits_to_f32(bits)
        elif info["dtype"] in _FLOAT_DTYPES:
            array = np.frombuffer(raw, dtype=_FLOAT_DTYPES[info["dtype"]])
        elif skip_unsupported:
            continue
        else:
            raise ValueError(f"{name}: unsupported dtype {info['dtype']!r}")
        tensors[name] = array.astype(np.float32).reshape(shape)
    return tensors


def save_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    float_dtype: str | None = None,
) -> None:
    """Write ``tensors`` as safetensors. Floating arrays are stored as
    ``float_dtype`` ("F32", "F16" or "BF16") if given, else in their own dtype;
    float64 / int32 / int64 arrays keep their dtype (F64 / I32 / I64), which
    lets tests build checkpoints with dtypes the model must reject."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        if float_dtype is not None and array.dtype.kind == "f":
            if float_dtype == "BF16":
                raw, tag = _f32_to_bf16_bits(array).astype("<u2").tobytes(), "BF16"
            else:
                np_dtype = {"F32": "<f4", "F16": "<f2"}[float_dtype]
                raw, tag = array.astype(np_dtype).tobytes(), float_dtype
        else:
            tag = _WRITE_DTYPES[array.dtype]
            raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": tag,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    header_bytes = json.dumps(header).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # align the data like safetensors does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for raw in chunks:
            f.write(raw)


# ----------------------------------------------------------------------------
# Parameter names and shapes (the PyTorch state_dict of Seq2SeqTransformer).


def _attention_shapes(prefix: str, e: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.in_proj_weight": (3 * e, e),
        f"{prefix}.in_proj_bias": (3 * e,),
        f"{prefix}.out_proj.weight": (e, e),
        f"{prefix}.out_proj.bias": (e,),
    }


def parameter_shapes(config: Mapping) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint for ``config`` must hold, with its shape
    (``positional_encoding.pos_embedding`` is optional and not listed)."""
    e, f = config["d_model"], config["d_ff"]
    shapes = {
        "src_tok_emb.embedding.weight": (config["src_vocab_size"], e),
        "tgt_tok_emb.embedding.weight": (config["tgt_vocab_size"], e),
        "generator.weight": (config["tgt_vocab_size"], e),
        "generator.bias": (config["tgt_vocab_size"],),
    }
    for side, n_layers, attentions, n_norms in (
        ("encoder", config["n_encoder_layers"], ("self_attn",), 2),
        ("decoder", config["n_decoder_layers"], ("self_attn", "multihead_attn"), 3),
    ):
        for i in range(n_layers):
            layer = f"transformer.{side}.layers.{i}"
            for attention in attentions:
                shapes.update(_attention_shapes(f"{layer}.{attention}", e))
            shapes[f"{layer}.linear1.weight"] = (f, e)
            shapes[f"{layer}.linear1.bias"] = (f,)
            shapes[f"{layer}.linear2.weight"] = (e, f)
            shapes[f"{layer}.linear2.bias"] = (e,)
            for k in range(1, n_norms + 1):
                shapes[f"{layer}.norm{k}.weight"] = (e,)
                shapes[f"{layer}.norm{k}.bias"] = (e,)
        shapes[f"transformer.{side}.norm.weight"] = (e,)
        shapes[f"transformer.{side}.norm.bias"] = (e,)
    return shapes


def random_state_dict(config: Mapping, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random float32 weights for ``config``: Xavier-like matrices, biases and
    LayerNorm parameters perturbed away from 0 / 1 so that dropping any of them
    changes the output; includes the positional table."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in parameter_shapes(config).items():
        if name.endswith("bias"):
            value = 0.1 * rng.standard_normal(shape)
        elif ".norm" in name:  # LayerNorm weight
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif "embedding" in name:
            value = 0.5 * rng.standard_normal(shape) / math.sqrt(shape[1])
        else:
            value = rng.standard_normal(shape) * math.sqrt(2.0 / sum(shape))
        state[name] = (scale * value).astype(np.float32)
    table = sinusoidal_positions(config["max_len"], config["d_model"])
    state["positional_encoding.pos_embedding"] = table.astype(np.float32)
    return state


# ----------------------------------------------------------------------------
# Building blocks. x: [..., E] float64.


def sinusoidal_positions(max_len: int, d_model: int) -> np.ndarray:
    """PE [max_len, E]: PE[p, 2i] = sin(p / 10000^(2i/E)), PE[p, 2i+1] = cos(...)."""
    inv_freq = np.exp(-np.arange(0, d_model, 2) * math.log(10000.0) / d_model)
    angles = np.arange(max_len)[:, None] * inv_freq[None, :]
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles)[:, : d_model // 2]
    return table


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _activation(x, name):
    if name == "relu":
        return np.maximum(x, 0.0)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))  # exact erf GELU


def _masked_softmax(scores, visible):
    """softmax over the last axis of scores where visible (bool, broadcast);
    a row with no visible key gives zeros (API.md)."""
    scores = np.where(visible, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    weights = np.where(visible, np.exp(scores - row_max), 0.0)
    total = weights.sum(axis=-1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)


def _attention(p, prefix, query, key_value, n_heads, visible):
    """torch.nn.MultiheadAttention, batch first.
    query [B, Tq, E], key_value [B, Tk, E], visible bool broadcastable to
    [B, 1, Tq, Tk] (True = may attend) -> [B, Tq, E]."""
    b, tq, e = query.shape
    tk = key_value.shape[1]
    d = e // n_heads
    w, bias = p[f"{prefix}.in_proj_weight"], p[f"{prefix}.in_proj_bias"]
    q = query @ w[:e].T + bias[:e]
    k = key_value @ w[e : 2 * e].T + bias[e : 2 * e]
    v = key_value @ w[2 * e :].T + bias[2 * e :]
    q = q.reshape(b, tq, n_heads, d).transpose(0, 2, 1, 3)  # [B, H, Tq, D]
    k = k.reshape(b, tk, n_heads, d).transpose(0, 2, 1, 3)  # [B, H, Tk, D]
    v = v.reshape(b, tk, n_heads, d).transpose(0, 2, 1, 3)
    weights = _masked_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d), visible)
    heads = (weights @ v).transpose(0, 2, 1, 3).reshape(b, tq, e)
    return heads @ p[f"{prefix}.out_proj.weight"].T + p[f"{prefix}.out_proj.bias"]


def _feed_forward(p, prefix, x, activation):
    hidden = _activation(
        x @ p[f"{prefix}.linear1.weight"].T + p[f"{prefix}.linear1.bias"], activation
    )
    return hidden @ p[f"{prefix}.linear2.weight"].T + p[f"{prefix}.linear2.bias"]


def _as_token_batch(tokens, pad_id: int) -> np.ndarray:
    """[B, L] int64 from an int array or a list of token lists padded with pad_id."""
    if isinstance(tokens, np.ndarray):
        return tokens.astype(np.int64)
    rows = [list(row) for row in tokens]
    length = max((len(row) for row in rows), default=0)
    batch = np.full((len(rows), length), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = row
    return batch


# ----------------------------------------------------------------------------


class Transformer:
    """The whole model in float64 NumPy. ``state_dict`` maps the PyTorch
    names (CHECKPOINT.md) to arrays (extra names are ignored; the positional
    table is optional); ``config`` is the config.json dict."""

    def __init__(self, state_dict: Mapping[str, np.ndarray], config: Mapping):
        self.config = dict(config)
        self.params = {}
        for name, shape in parameter_shapes(config).items():
            value = np.asarray(state_dict[name], dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"{name}: shape {value.shape}, expected {shape}")
            self.params[name] = value
        # PyTorch adds the checkpoint's buffer (e.g. rounded to f16); the
        # formula only when the checkpoint has no table.
        table = state_dict.get("positional_encoding.pos_embedding")
        if table is None:
            table = sinusoidal_positions(config["max_len"], config["d_model"])
        self.positions = np.asarray(table, dtype=np.float64)
        if self.positions.shape != (config["max_len"], config["d_model"]):
            raise ValueError(f"positional_encoding.pos_embedding: shape {self.positions.shape}")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Transformer:
        """A checkpoint folder: config.json + model.safetensors."""
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        return cls(load_safetensors(os.path.join(path, "model.safetensors")), config)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, np.ndarray], config: Mapping) -> Transformer:
        return cls(state_dict, config)

    # -- pieces --------------------------------------------------------------

    def _embed(self, table: str, tokens: np.ndarray) -> np.ndarray:
        """tokens [B, L] -> emb[tokens] * sqrt(E) + PE[:L]  [B, L, E]."""
        scale = math.sqrt(self.config["d_model"])
        return self.params[table][tokens] * scale + self.positions[: tokens.shape[1]]

    def _norm(self, prefix: str, x: np.ndarray) -> np.ndarray:
        p, eps = self.params, self.config["layer_norm_eps"]
        return _layer_norm(x, p[f"{prefix}.weight"], p[f"{prefix}.bias"], eps)

    def _sublayer(self, layer: str, k: int, x: np.ndarray, f) -> np.ndarray:
        """Residual around f with LayerNorm norm{k}, post-LN or pre-LN."""
        norm = f"{layer}.norm{k}"
        if self.config["norm_first"]:
            return x + f(self._norm(norm, x))
        return self._norm(norm, x + f(x))

    # -- public --------------------------------------------------------------

    def encode(self, src) -> np.ndarray:
        """src [B, S] ints padded with pad_id (or a list of token lists)
        -> memory [B, S, E]. No query attends to a pad_id position."""
        cfg, p = self.config, self.params
        src = _as_token_batch(src, cfg["pad_id"])
        visible = (src != cfg["pad_id"])[:, None, None, :]  # [B, 1, 1, S]
        x = self._embed("src_tok_emb.embedding.weight", src)
        for i in range(cfg["n_encoder_layers"]):
            layer = f"transformer.encoder.layers.{i}"

            def self_attention(h, layer=layer):
                return _attention(p, f"{layer}.self_attn", h, h, cfg["n_heads"], visible)

            def feed_forward(h, layer=layer):
                return _feed_forward(p, layer, h, cfg["activation"])

            x = self._sublayer(layer, 1, x, self_attention)
            x = self._sublayer(layer, 2, x, feed_forward)
        return self._norm("transformer.encoder.norm", x)

    def decode(self, tgt, memory, memory_key_padding_mask=None, tgt_key_padding_mask=None):
        """tgt [B, T] ints, memory [B, S, E], masks bool True = padding
        ([B, S] and [B, T]) -> logits [B, T, V]; causal self-attention."""
        cfg, p = self.config, self.params
        tgt = _as_token_batch(tgt, cfg["pad_id"])
        memory = np.asarray(memory, dtype=np.float64)
        b, t = tgt.shape
        causal = np.tril(np.ones((t, t), dtype=bool))  # query i sees keys j <= i
        self_visible = np.broadcast_to(causal, (b, 1, t, t))
        if tgt_key_padding_mask is not None:
            self_visible = self_visible & ~np.asarray(tgt_key_padding_mask)[:, None, None, :]
        if memory_key_padding_mask is None:
            cross_visible = np.ones((1, 1, 1, memory.shape[1]), dtype=bool)
        else:
            cross_visible = ~np.asarray(memory_key_padding_mask, dtype=bool)[:, None, None, :]
        x = self._embed("tgt_tok_emb.embedding.weight", tgt)
        for i in range(cfg["n_decoder_layers"]):
            layer = f"transformer.decoder.layers.{i}"

            def self_attention(h, layer=layer):
                return _attention(p, f"{layer}.self_attn", h, h, cfg["n_heads"], self_visible)

            def cross_attention(h, layer=layer):
                return _attention(
                    p, f"{layer}.multihead_attn", h, memory, cfg["n_heads"], cross_visible
                )

            def feed_forward(h, layer=layer):
                return _feed_forward(p, layer, h, cfg["activation"])

            x = self._sublayer(layer, 1, x, self_attention)
            x = self._sublayer(layer, 2, x, cross_attention)
            x = self._sublayer(layer, 3, x, feed_forward)
        x = self._norm("transformer.decoder.norm", x)
        return x @ p["generator.weight"].T + p["generator.bias"]

    def forward(self, src, tgt) -> np.ndarray:
        """encode(src), then decode(tgt) with src's padding mask -> [B, T, V]."""
        src = _as_token_batch(src, self.config["pad_id"])
        memory = self.encode(src)
        return self.decode(tgt, memory, memory_key_padding_mask=src == self.config["pad_id"])

    def greedy(self, src, max_new_tokens: int) -> list[list[int]]:
        """Argmax each step, re-running the whole decoder on the prefix every
        time (no cache). Returns, per source, the new tokens (bos excluded),
        ending with eos_id if it was produced."""
        cfg = self.config
        src = _as_token_batch(src, cfg["pad_id"])
        memory = self.encode(src)
        src_pad = src == cfg["pad_id"]
        results = []
        for row in range(src.shape[0]):
            tokens = [cfg["bos_id"]]
            for _ in range(max_new_tokens):
                logits = self.decode([tokens], memory[row : row + 1], src_pad[row : row + 1])
                tokens.append(int(np.argmax(logits[0, -1])))
                if tokens[-1] == cfg["eos_id"]:
                    break
            results.append(tokens[1:])
        return results

    def step_log_probs(self, src, continuations: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per source, log p(token_t | bos, tokens_<t, src) for each token of
        its continuation (bos not included): a list of [len] arrays."""
        cfg = self.config
        src = _as_token_batch(src, cfg["pad_id"])
        memory = self.encode(src)
        src_pad = src == cfg["pad_id"]
        out = []
        for row, tokens in enumerate(continuations):
            tokens = [int(t) for t in tokens]
            if not tokens:
                out.append(np.zeros(0))
                continue
            prefix = [cfg["bos_id"], *tokens[:-1]]
            logits = self.decode([prefix], memory[row : row + 1], src_pad[row : row + 1])[0]
            shifted = logits - logits.max(axis=-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            out.append(log_probs[np.arange(len(tokens)), tokens])
        return out

    def score(self, src, continuations, length_penalty: float = 1.0) -> np.ndarray:
        """[B]: summed log-probability of each continuation divided by
        len(tokens) ** length_penalty (the score generate() reports)."""
        return np.array(
            [
                lp.sum() / (len(lp) ** length_penalty) if len(lp) else 0.0
                for lp in self.step_log_probs(src, continuations)
            ]
        )
