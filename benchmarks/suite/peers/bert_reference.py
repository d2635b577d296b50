"""BERT's ``last_hidden_state`` in float64 from ``tr.reference.ops``: the oracle
the benchmark checks every embedding engine against.
Shape key: B batch, T tokens, H hidden."""

from __future__ import annotations

import numpy as np

from transformer_rs.reference import ops


def last_hidden_state(folder, ids, mask):
    """ids, mask [B, T] (mask 1 = token) -> [B, T, H] float64 (token type 0)."""
    cfg, w = folder.config, folder.state
    eps = cfg["layer_norm_eps"]
    assert cfg["hidden_act"] == "gelu", "the reference implements exact GELU only"
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = ops.layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    padding = np.asarray(mask) == 0
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        qkv = [f"{p}.attention.self.{part}" for part in ("query", "key", "value")]
        attn = ops.multi_head_attention(
            x,
            x,
            x,
            cfg["num_attention_heads"],
            np.concatenate([w[f"{name}.weight"] for name in qkv]),
            np.concatenate([w[f"{name}.bias"] for name in qkv]),
            w[f"{p}.attention.output.dense.weight"],
            w[f"{p}.attention.output.dense.bias"],
            key_padding_mask=padding,
        )
        norm = f"{p}.attention.output.LayerNorm"
        x = ops.layer_norm(x + attn, w[f"{norm}.weight"], w[f"{norm}.bias"], eps)
        hidden = ops.gelu(
            ops.linear(x, w[f"{p}.intermediate.dense.weight"], w[f"{p}.intermediate.dense.bias"])
        )
        out = ops.linear(hidden, w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"])
        norm = f"{p}.output.LayerNorm"
        x = ops.layer_norm(x + out, w[f"{norm}.weight"], w[f"{norm}.bias"], eps)
    return x
