"""ONNX Runtime computing a BERT encoder (post-LN, exact GELU) and its mean
pooling + L2 normalisation, as a graph of plain ONNX ops built from the
safetensors weights. Shape key: B batch, T tokens, H hidden."""

from __future__ import annotations

import numpy as np

from .onnx_graph import GraphBuilder


def build(folder, threads):
    """A function (ids [B, T], mask [B, T]) -> (last_hidden_state [B, T, H],
    embeddings [B, H]); mask 1 = token, 0 = padding; token type 0."""
    from onnx import TensorProto, helper

    cfg, w = folder.config, folder.state
    h, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
    assert cfg["hidden_act"] == "gelu", "the graph implements exact GELU only"
    g = GraphBuilder()

    def norm(x, name, out):
        return g.layer_norm(x, w[f"{name}.weight"], w[f"{name}.bias"], eps, out)

    def linear(x, name, out):
        return g.linear(x, w[f"{name}.weight"], w[f"{name}.bias"], out)

    words = g.node("Gather", [g.const("words", w["embeddings.word_embeddings.weight"]), "ids"], "e")
    length = g.node("Shape", ["ids"], "length", start=1, end=2)
    table = g.const("pos", w["embeddings.position_embeddings.weight"])
    zero = g.const("zero", np.array([0], np.int64))
    positions = g.node("Slice", [table, zero, length], "positions")
    token_type = g.const("type0", w["embeddings.token_type_embeddings.weight"][0])
    x = g.node("Add", [g.node("Add", [words, positions], "e_pos"), token_type], "e_all")
    x = norm(x, "embeddings.LayerNorm", "x0")

    mask_index = g.node("Cast", ["attention_mask"], "mask_index", to=TensorProto.INT32)

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        qkv = [f"{p}.attention.self.{part}" for part in ("query", "key", "value")]
        w_qkv = np.concatenate([w[f"{name}.weight"] for name in qkv])
        b_qkv = np.concatenate([w[f"{name}.bias"] for name in qkv])
        heads = cfg["num_attention_heads"]
        ctx = g.self_attention(x, w_qkv, b_qkv, heads, f"{p}.ctx", mask_index)
        attn = linear(ctx, f"{p}.attention.output.dense", f"{p}.attn")
        x = norm(g.node("Add", [x, attn], f"{p}.r1"), f"{p}.attention.output.LayerNorm", f"{p}.x1")
        inner = g.node("Gelu", [linear(x, f"{p}.intermediate.dense", f"{p}.in")], f"{p}.gelu")
        inner = linear(inner, f"{p}.output.dense", f"{p}.out")
        x = norm(g.node("Add", [x, inner], f"{p}.r2"), f"{p}.output.LayerNorm", f"{p}.x2")
    hidden = g.node("Identity", [x], "last_hidden_state")

    mask = g.node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    mask3 = g.node("Unsqueeze", [mask, g.const("axis_2", np.array([2], np.int64))], "mask3")
    axis_1 = g.const("axis_1", np.array([1], np.int64))
    summed = g.node(
        "ReduceSum", [g.node("Mul", [hidden, mask3], "kept"), axis_1], "summed", keepdims=0
    )
    count = g.node("ReduceSum", [mask3, axis_1], "count", keepdims=0)
    mean = g.node("Div", [summed, count], "mean")
    g.node("LpNormalization", [mean], "embeddings", axis=-1, p=2)

    def io(name, dtype, shape):
        return helper.make_tensor_value_info(name, dtype, shape)

    session = g.session(
        [io("ids", TensorProto.INT64, ["B", "T"]),
         io("attention_mask", TensorProto.INT64, ["B", "T"])],
        [io("last_hidden_state", TensorProto.FLOAT, ["B", "T", h]),
         io("embeddings", TensorProto.FLOAT, ["B", h])],
        threads,
    )  # fmt: skip

    def run(ids, mask):
        return session.run(None, {"ids": ids, "attention_mask": mask})

    return run
