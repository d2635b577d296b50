"""A small builder of ONNX graphs from plain ONNX ops (``onnx.helper``), and
the ONNX Runtime CPU session that runs them. Shape key: B batch, S sequence,
E model width, H heads, D head dim (E / H)."""

from __future__ import annotations

import numpy as np


class GraphBuilder:
    """Collects nodes and initializers; every method returns its output's name."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.nodes, self.weights = [], {}

    def const(self, name, value):
        self.weights[name] = self._numpy_helper.from_array(np.asarray(value), name)
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(self._helper.make_node(op, inputs, [output], **attrs))
        return output

    def linear(self, x, weight, bias, out):
        """x [..., in] @ weight.T + bias, weight [out, in] (PyTorch layout)."""
        w = self.const(f"{out}.w", np.ascontiguousarray(weight.T))
        y = self.node("MatMul", [x, w], f"{out}.mm")
        return self.node("Add", [y, self.const(f"{out}.b", bias)], out)

    def layer_norm(self, x, weight, bias, eps, out):
        scale, shift = self.const(f"{out}.g", weight), self.const(f"{out}.beta", bias)
        return self.node("LayerNormalization", [x, scale, shift], out, axis=-1, epsilon=eps)

    def self_attention(self, x, in_proj_weight, in_proj_bias, heads, out, mask_index=None):
        """Multi-head self-attention without the output projection, x [B, S, E]
        -> [B, S, E], as ORT's fused CPU ``com.microsoft.Attention`` op (what
        ORT's own transformer optimiser turns BERT attention into): one packed
        QKV product, scale 1/sqrt(D), softmax, PV. in_proj_weight [3E, E] is
        Wq; Wk; Wv (PyTorch layout); mask_index [B, S] int32, 1 = key visible."""
        w = self.const(f"{out}.wqkv", np.ascontiguousarray(in_proj_weight.T))
        b = self.const(f"{out}.bqkv", in_proj_bias)
        inputs = [x, w, b] + ([mask_index] if mask_index is not None else [])
        self.nodes.append(
            self._helper.make_node(
                "Attention", inputs, [out], domain="com.microsoft", num_heads=heads
            )
        )
        return out

    def session(self, inputs, outputs, threads):
        """onnxruntime.InferenceSession of the graph (opset 20 + ORT's contrib
        ops) on `threads`
        intra-op threads, with ORT's default (full) graph optimisations.
        inputs / outputs: onnx ValueInfoProtos."""
        import onnxruntime

        helper = self._helper
        graph = helper.make_graph(
            self.nodes, "graph", inputs, outputs, initializer=list(self.weights.values())
        )
        opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
        model = helper.make_model(graph, opset_imports=opsets)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
