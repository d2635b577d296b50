"""ONNX Runtime computing ``tr.Transformer.encode`` of a Transformer-base state
dict (CHECKPOINT.md names; pre-LN, ReLU), as a graph of plain ONNX ops.
Shape key: B batch, S source length, E d_model."""

from __future__ import annotations

import numpy as np

from .onnx_graph import GraphBuilder


def build_encoder(config, state, threads):
    """A function ids [B, S] (no padding) -> memory [B, S, E] float32."""
    from onnx import TensorProto, helper

    assert config["norm_first"] and config["activation"] == "relu"
    e, eps = config["d_model"], config["layer_norm_eps"]
    g = GraphBuilder()

    def norm(x, name, out):
        return g.layer_norm(x, state[f"{name}.weight"], state[f"{name}.bias"], eps, out)

    def linear(x, name, out):
        return g.linear(x, state[f"{name}.weight"], state[f"{name}.bias"], out)

    emb = g.node("Gather", [g.const("emb", state["src_tok_emb.embedding.weight"]), "ids"], "emb_x")
    scaled = g.node("Mul", [emb, g.const("sqrt_e", np.float32(np.sqrt(e)))], "scaled")
    length = g.node("Shape", ["ids"], "length", start=1, end=2)
    table = g.const("pe", state["positional_encoding.pos_embedding"])
    positions = g.node("Slice", [table, g.const("zero", np.array([0], np.int64)), length], "pos")
    x = g.node("Add", [scaled, positions], "x_in")
    for i in range(config["n_encoder_layers"]):
        p = f"transformer.encoder.layers.{i}"
        h = norm(x, f"{p}.norm1", f"{p}.h1")
        w_in, b_in = state[f"{p}.self_attn.in_proj_weight"], state[f"{p}.self_attn.in_proj_bias"]
        ctx = g.self_attention(h, w_in, b_in, config["n_heads"], f"{p}.ctx")
        x = g.node("Add", [x, linear(ctx, f"{p}.self_attn.out_proj", f"{p}.attn")], f"{p}.x1")
        h = norm(x, f"{p}.norm2", f"{p}.h2")
        hidden = g.node("Relu", [linear(h, f"{p}.linear1", f"{p}.ff1")], f"{p}.relu")
        x = g.node("Add", [x, linear(hidden, f"{p}.linear2", f"{p}.ff2")], f"{p}.x2")
    norm(x, "transformer.encoder.norm", "memory")
    session = g.session(
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "S"])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["B", "S", e])],
        threads,
    )
    return lambda ids: session.run(None, {"ids": np.asarray(ids, np.int64)})[0]
