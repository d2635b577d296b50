"""Pure-NumPy (float64) reference of a Hugging Face BERT encoder and of a
sentence-transformers embedding, the oracle the tests hold ``tr.BertModel``
and ``tr.SentenceEncoder`` to.

It is written from the Hugging Face tensor names directly (separate query,
key and value projections; no weight repacking), and it embeds one sentence
at a time with no batching, sorting or padding, adding [CLS]/[SEP] and
truncating by hand, so that each of those steps of the engine is checked
against an independent path. Tokenization itself is the ``tokenizers``
package's (with its own truncation and padding switched off).

Shape key: B batch, T tokens, E hidden size, H heads, D = E / H.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from . import ops

__all__ = ["BertModel", "encode_sentences", "load_float_tensors"]

_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}


def load_float_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The floating-point tensors of a safetensors file as float64 arrays
    (BF16 widened); tensors of other dtypes (``position_ids``) are skipped."""
    blob = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_len])
    data = memoryview(blob)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(data[start:end], dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif info["dtype"] in _DTYPES:
            array = np.frombuffer(data[start:end], dtype=_DTYPES[info["dtype"]])
        else:
            continue
        tensors[name] = array.astype(np.float64).reshape(info["shape"])
    return tensors


class BertModel:
    """``transformers.BertModel`` up to ``last_hidden_state``, in float64."""

    def __init__(self, tensors: dict[str, np.ndarray], config: dict):
        prefixed = "bert.embeddings.word_embeddings.weight" in tensors
        self.p = {
            (k[len("bert.") :] if prefixed and k.startswith("bert.") else k): v
            for k, v in tensors.items()
        }
        self.config = config

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BertModel:
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        return cls(load_float_tensors(folder / "model.safetensors"), config)

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        weight = self.p[f"{name}.weight"]
        # As a 2-D product, so NumPy hands it to BLAS (a stacked one it may not).
        y = x.reshape(-1, x.shape[-1]) @ weight.T + self.p[f"{name}.bias"]
        return y.reshape(*x.shape[:-1], weight.shape[0])

    def _norm(self, name: str, x: np.ndarray) -> np.ndarray:
        eps = self.config.get("layer_norm_eps", 1e-12)
        return ops.layer_norm(x, self.p[f"{name}.weight"], self.p[f"{name}.bias"], eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> np.ndarray:
        """last_hidden_state [B, T, E] (float64) for input_ids [B, T];
        attention_mask [B, T]: 1 = token, 0 = padding key."""
        ids = np.asarray(input_ids, dtype=np.int64)
        b, t = ids.shape
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        p, cfg = self.p, self.config
        x = (
            p["embeddings.word_embeddings.weight"][ids]
            + p["embeddings.position_embeddings.weight"][np.arange(t)][None]
            + p["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm("embeddings.LayerNorm", x)
        h = cfg["num_attention_heads"]
        d = x.shape[-1] // h
        visible = (mask != 0)[:, None, None, :]  # [B, 1, 1, T]: True = may attend
        act = {"gelu": ops.gelu, "relu": ops.relu}[cfg.get("hidden_act", "gelu")]

        def heads(y):  # [B, T, E] -> [B, H, T, D]
            return y.reshape(b, t, h, d).transpose(0, 2, 1, 3)

        for i in range(cfg["num_hidden_layers"]):
            layer = f"encoder.layer.{i}"
            q, k, v = (
                heads(self._linear(f"{layer}.attention.self.{part}", x))
                for part in ("query", "key", "value")
            )
            ctx = ops.scaled_dot_product_attention(q, k, v, attn_mask=visible)
            ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, h * d)
            attn = self._linear(f"{layer}.attention.output.dense", ctx)
            x = self._norm(f"{layer}.attention.output.LayerNorm", x + attn)
            hidden = act(self._linear(f"{layer}.intermediate.dense", x))
            x = self._norm(
                f"{layer}.output.LayerNorm", x + self._linear(f"{layer}.output.dense", hidden)
            )
        return x


def _pool(hidden: np.ndarray, config: dict) -> np.ndarray:
    """One unpadded sentence's hidden [T, E] -> the pooled vector, modes
    concatenated in sentence-transformers' order (cls, max, mean, mean_sqrt_len)."""
    parts = []
    if config.get("pooling_mode_cls_token"):
        parts.append(hidden[0])
    if config.get("pooling_mode_max_tokens"):
        parts.append(hidden.max(axis=0))
    if config.get("pooling_mode_mean_tokens"):
        parts.append(hidden.mean(axis=0))
    if config.get("pooling_mode_mean_sqrt_len_tokens"):
        parts.append(hidden.sum(axis=0) / np.sqrt(len(hidden)))
    return np.concatenate(parts)


def encode_sentences(folder: str | os.PathLike, sentences, normalize: bool = True) -> np.ndarray:
    """sentence-transformers' ``encode`` of a folder whose modules are a BERT
    Transformer at the folder root, a Pooling and optionally a Normalize:
    float64 ``[N, dim]``, one sentence at a time."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    modules = json.loads((folder / "modules.json").read_text())
    pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads((folder / pooling_dir / "config.json").read_text())
    normalize = normalize or any(m["type"].endswith("Normalize") for m in modules)
    st_config = json.loads((folder / "sentence_bert_config.json").read_text())
    max_len = st_config["max_seq_length"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    model = BertModel.load(folder)
    out = []
    for sentence in sentences:
        text = sentence.strip()
        if st_config.get("do_lower_case"):
            text = text.lower()
        words = tokenizer.encode(text, add_special_tokens=False).ids
        ids = [cls_id, *words[: max_len - 2], sep_id]
        vector = _pool(model.forward(np.array([ids]))[0], pooling)
        if normalize:
            vector = vector / max(np.linalg.norm(vector), 1e-12)
        out.append(vector)
    return np.stack(out)
