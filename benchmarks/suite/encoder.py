"""Encoder row group: ``tr.Transformer.encode`` of Transformer-base next to
ONNX Runtime, CTranslate2 and PyTorch's ``nn.TransformerEncoder`` on the same
weights and token ids, in ms per call. Shape key: B batch, S source length."""

from __future__ import annotations

import tempfile

import numpy as np

import transformer_rs as tr

from .common import OURS, Context, Row, time_engines
from .transformer_base import FIRST_TOKEN, config_and_weights, encoder_flops

TITLE = "Transformer-base encoder (ms per call, lower is better)"
UNIT = "ms"
SHAPES = [(1, 32), (1, 128), (8, 128), (32, 64)]
QUICK_SHAPES = [(1, 8), (4, 16)]
# The machine's practical fp32 GEMM throughput per thread (issue 7: ~430 GFLOP/s
# on 2 threads), against which encode() is held at (8, 128).
LIMIT_GFLOPS_PER_THREAD = 215.0
FLOP_LIMIT_CASE = "B=8, S=128"


def value(row: Row, engine: str) -> float:
    return row.seconds[engine] * 1e3


def extra_columns(row: Row) -> dict[str, str]:
    """How far our time is from the FLOP limit: ours / (FLOPs / limit); issue
    7's target is <= 1.15 at (8, 128)."""
    limit = row.work / (LIMIT_GFLOPS_PER_THREAD * row.threads * 1e9)
    ours = row.seconds.get(OURS)
    cell = f"{ours / limit:.2f}" if ours else "-"
    if ours and row.case == FLOP_LIMIT_CASE:
        cell += " (target ≤ 1.15: " + ("yes)" if ours / limit <= 1.15 else "**no**)")
    return {"ours / FLOP limit": cell}


def measure(ctx: Context) -> list[Row]:
    config, state = config_and_weights(ctx.quick)
    ours = tr.Transformer.from_state_dict(state, config)
    peers = {}
    with tempfile.TemporaryDirectory() as folder:
        if ctx.peer("onnx", "onnxruntime"):
            from .peers import onnx_transformer

            peers["ONNX Runtime"] = onnx_transformer.build_encoder(config, state, ctx.threads)
        if ctx.peer("ctranslate2"):
            from .peers import ct2_transformer

            ct2 = ct2_transformer.build_encoder(config, state, folder, ctx.threads)
            peers["CTranslate2"] = lambda ids: np.asarray(
                ct2.forward_batch(ids.tolist()).last_hidden_state
            )
        if ctx.peer("torch"):
            from .peers import torch_transformer

            peers["torch"] = torch_transformer.build_encoder(config, state)

        rng = np.random.default_rng(0)
        rows = []
        for b, s in QUICK_SHAPES if ctx.quick else SHAPES:
            src = rng.integers(FIRST_TOKEN, config["src_vocab_size"], (b, s))
            row = Row("encoder", f"B={b}, S={s}", ctx.threads, work=encoder_flops(config, b, s))
            row.target = 1.25
            calls = {OURS: lambda src=src: ours.encode(src)}
            calls.update({name: lambda f=f, src=src: f(src) for name, f in peers.items()})
            outputs = time_engines(row, calls, ctx)
            memory = outputs[OURS]
            row.check = ", ".join(
                f"{name} {np.abs(np.asarray(out) - memory).max():.0e}"
                for name, out in outputs.items()
                if name != OURS
            )
            rows.append(row)
    return rows
