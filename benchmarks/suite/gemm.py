"""GEMM row group: ``tr.ops.matmul`` next to ``torch.matmul`` and
``numpy.matmul`` (its BLAS) on the same float32 arrays, in GFLOP/s. The shapes
are the square products and the M <= 128 products of batch-1 inference
(includes issue 2's table). Issue 7's targets are over torch: >= 1.3x at
M <= 32, >= 1.0x for the square products. Issue 2's bar is over numpy: >= 1.0x
at M = 1 and M = 32, >= 0.7x at 1024^3 on 2 threads. Shape key:
a [M, K] @ b [K, N]."""

from __future__ import annotations

import numpy as np

import transformer_rs as tr

from .common import OURS, Context, Row, time_engines

TITLE = "Matrix multiply (fp32 GFLOP/s, higher is better)"
UNIT = "GFLOP/s"
SHAPES = [
    (1, 512, 512),
    (1, 512, 2048),
    (32, 512, 512),
    (32, 512, 2048),
    (128, 512, 2048),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
]
QUICK_SHAPES = [(1, 64, 64), (32, 64, 128), (128, 128, 128)]


def value(row: Row, engine: str) -> float:
    return row.work / row.seconds[engine] / 1e9


def issue2_bar(row: Row) -> float | None:
    """Issue 2's least ratio over numpy for this row, if it has one."""
    m, k, n = (int(d) for d in row.case.split("×"))
    if m in (1, 32):
        return 1.0
    if m == k == n == 1024 and row.threads == 2:
        return 0.7
    return None


def extra_columns(row: Row) -> dict[str, str]:
    """Ours over numpy, and issue 2's bar where it has one."""
    ours, numpy = row.seconds.get(OURS), row.seconds.get("numpy")
    if not (ours and numpy):
        return {"ours / numpy": "-", "issue 2 bar": "-"}
    ratio = numpy / ours
    bar = issue2_bar(row)
    met = "-" if bar is None else f"≥ {bar:.2f}: " + ("yes" if ratio >= bar else "**no**")
    return {"ours / numpy": f"{ratio:.2f}", "issue 2 bar": met}


def measure(ctx: Context) -> list[Row]:
    rng = np.random.default_rng(0)
    torch = None
    if ctx.peer("torch"):
        import torch
    rows = []
    for m, k, n in QUICK_SHAPES if ctx.quick else SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        calls = {OURS: lambda a=a, b=b: tr.ops.matmul(a, b)}
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            calls["torch"] = lambda ta=ta, tb=tb: torch.matmul(ta, tb).numpy()
        if ctx.with_peers:
            calls["numpy"] = lambda a=a, b=b: np.matmul(a, b)
        row = Row("gemm", f"{m}×{k}×{n}", ctx.threads, work=2.0 * m * k * n)
        row.target = 1.3 if m <= 32 else 1.0 if m == k == n else None
        row.target_peer = "torch"
        outputs = time_engines(row, calls, ctx)
        expected = a @ b
        scale = np.abs(expected).max()
        worst = max(np.abs(out - expected).max() / scale for out in outputs.values())
        row.check = f"max rel diff {worst:.0e}"
        rows.append(row)
    return rows
