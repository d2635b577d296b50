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

    def attention(self, q, k, v, heads, width, out, score_bias=None):
        """Multi-head scaled dot-product attention of projected q, k, v
        [B, S, E] -> [B, S, E]; score_bias [B, 1, 1, S] is added to the scores
        (0 = visible, very negative = padding)."""
        d = width // heads
        split = self.const(f"{out}.split", np.array([0, 0, heads, d], np.int64))
        merge = self.const(f"{out}.merge", np.array([0, 0, width], np.int64))
        parts = []
        for name, x, perm in (
            (f"{out}.q", q, [0, 2, 1, 3]),
            (f"{out}.k", k, [0, 2, 3, 1]),
            (f"{out}.v", v, [0, 2, 1, 3]),
        ):  # fmt: skip  (k as [B, H, D, S])
            x = self.node("Reshape", [x, split], f"{name}4")
            parts.append(self.node("Transpose", [x], f"{name}t", perm=perm))
        scores = self.node("MatMul", parts[:2], f"{out}.scores")
        scale = self.const(f"{out}.scale", np.float32(1 / np.sqrt(d)))
        scores = self.node("Mul", [scores, scale], f"{out}.scaled")
        if score_bias is not None:
            scores = self.node("Add", [scores, score_bias], f"{out}.masked")
        probs = self.node("Softmax", [scores], f"{out}.probs", axis=-1)
        ctx = self.node("MatMul", [probs, parts[2]], f"{out}.ctx")
        ctx = self.node("Transpose", [ctx], f"{out}.ctxt", perm=[0, 2, 1, 3])
        return self.node("Reshape", [ctx, merge], out)

    def session(self, inputs, outputs, threads):
        """onnxruntime.InferenceSession of the graph (opset 20) on `threads`
        intra-op threads, with ORT's default (full) graph optimisations.
        inputs / outputs: onnx ValueInfoProtos."""
        import onnxruntime

        helper = self._helper
        graph = helper.make_graph(
            self.nodes, "graph", inputs, outputs, initializer=list(self.weights.values())
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
