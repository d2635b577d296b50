"""Every speed comparison of issue 7, side by side, as Markdown tables.

    python benchmarks/run_all.py [--quick] [--threads 1 2] [--only gemm,encoder,generate,embed]
                                 [--repeats N] [--ours-only] [--markdown-out FILE]

Row groups: gemm (tr.ops.matmul vs torch and numpy), encoder (Transformer-base
encode vs ONNX Runtime, CTranslate2, torch), generate (greedy and beam 4 vs
CTranslate2), embed (all-MiniLM-L6-v2 vs ONNX Runtime, CTranslate2,
sentence-transformers), and threads (ours on the most vs the fewest threads,
and the CPU time burnt after a call returns). Peers that are not installed
are left out (`pip install ".[bench]"`; torch and sentence-transformers are
used when present, never required).

For each thread count the script runs the measurements in a child process
whose OPENBLAS/OMP/MKL_NUM_THREADS are set (NumPy's BLAS reads them only at
start-up); every engine there gets the same thread count and the same
inputs, and the engines take turns in up to five blocks of samples each (a
pause and at least 50 ms of warm-up calls before each block): median of at
least --repeats samples, a sample being back-to-back calls for about 2 ms (one
call when a call takes longer), timed together; a block holds at least 40 ms
of samples, so cheap calls get more samples than --repeats. The ratio column
is the best peer's time over ours: > 1 means transformer_rs is faster.
--quick runs tiny shapes once or twice: a smoke test, not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

from suite import embed, encoder, gemm, generate
from suite.common import BLOCK_SECONDS, OURS, PAUSE_SECONDS, ROUNDS, Context, Row, installed

GROUPS = {"gemm": gemm, "encoder": encoder, "generate": generate, "embed": embed}
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", default=",".join(GROUPS), help="comma-separated row groups")
    parser.add_argument("--repeats", type=int, help="samples per engine (default 10, quick 2)")
    parser.add_argument("--ours-only", action="store_true", help="leave every peer out")
    parser.add_argument("--markdown-out", help="also write the tables to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in args.only if g not in GROUPS]
    if unknown:
        parser.error(f"--only: unknown row group(s) {unknown}; expected some of {list(GROUPS)}")
    if args.repeats is None:
        args.repeats = 2 if args.quick else 10
    if not args.quick and args.repeats < 10:
        parser.error("--repeats: at least 10 for a measurement (use --quick for a smoke test)")
    return args


# -- child: measure at one thread count ----------------------------------------


def run_child(args) -> None:
    import transformer_rs as tr
    from suite.environment import describe

    tr.set_num_threads(args.child)
    if not args.ours_only and installed("torch"):
        import torch

        torch.set_num_threads(args.child)
    ctx = Context(args.child, args.quick, args.repeats, not args.ours_only, args.cache_dir)
    rows = []
    for name in args.only:
        print(f"[{args.child} thread(s)] {name} ...", file=sys.stderr, flush=True)
        rows += GROUPS[name].measure(ctx)
    with open(args.child_out, "w") as f:
        json.dump({"info": describe(), "rows": [dataclasses.asdict(r) for r in rows]}, f)


def measure(args, threads: int, cache_dir: str) -> tuple[dict, list[Row]]:
    """Runs a child at `threads`; cache_dir keeps what the children share."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "rows.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(threads),
               "--child-out", out, "--cache-dir", cache_dir, "--only", ",".join(args.only),
               "--repeats", str(args.repeats)]  # fmt: skip
        cmd += ["--quick"] * args.quick + ["--ours-only"] * args.ours_only
        env = dict(os.environ, **{var: str(threads) for var in THREAD_VARS})
        subprocess.run(cmd, env=env, check=True)
        with open(out) as f:
            result = json.load(f)
    return result["info"], [Row(**r) for r in result["rows"]]


# -- parent: tables ----------------------------------------------------------------


def engines_of(rows: list[Row]) -> list[str]:
    names = [OURS] if any(OURS in r.seconds for r in rows) else []
    for r in rows:
        names += [n for n in r.seconds if n not in names]
    return names


def table(header: list[str], body: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = [header, align, *body]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def ratio_cell(row: Row) -> str:
    """Best peer's seconds / ours (> 1 = we are faster), and which peer."""
    peers = {n: s for n, s in row.seconds.items() if n != OURS}
    if OURS not in row.seconds or not peers:
        return "-"
    best = min(peers, key=peers.get)
    return f"{peers[best] / row.seconds[OURS]:.2f} ({best})"


def target_cell(row: Row) -> str:
    """Whether the speed ratio over the target's peer (or the best peer)
    reaches the target."""
    peers = [s for n, s in row.seconds.items() if n != OURS]
    if row.target_peer is not None:
        peers = [s for n, s in row.seconds.items() if n == row.target_peer]
    if row.target is None or OURS not in row.seconds or not peers:
        return "-"
    met = min(peers) / row.seconds[OURS] >= row.target
    over = f" × {row.target_peer}" if row.target_peer else ""
    return f"≥ {row.target:.2f}{over}: " + ("yes" if met else "**no**")


def group_table(module, rows: list[Row]) -> str:
    engines = engines_of(rows)
    extra = getattr(module, "extra_columns", None)
    header = ["case", "threads"] + [f"{e} {module.UNIT}" for e in engines]
    header += ["ours / best peer", "target"] + (list(extra(rows[0])) if extra else [])
    header += ["check"]
    body = []
    for r in rows:
        cells = [r.case, str(r.threads)]
        cells += [f"{module.value(r, e):.1f}" if e in r.seconds else "-" for e in engines]
        cells += [ratio_cell(r), target_cell(r)] + (list(extra(r).values()) if extra else [])
        cells += [r.check]
        body.append(cells)
    return table(header, body)


def threads_table(rows: list[Row], few: int, many: int) -> str:
    """Ours on `many` vs `few` threads for every case, and the CPU time the
    process burns in the pause after a call returns (ours, busiest peer);
    empty when no case has both."""
    by_key = {(r.group, r.case, r.threads): r for r in rows}
    pause = f"{PAUSE_SECONDS * 1e3:.0f} ms"
    header = ["group / case", f"ours {few} thr", f"ours {many} thr",
              f"speed-up {many} vs {few} thr", f"ours CPU ms in the {pause} after a call",
              "busiest peer, same window", "ok"]  # fmt: skip
    body = []
    for r in rows:
        if r.threads != many or OURS not in r.seconds:
            continue
        base = by_key.get((r.group, r.case, few))
        if base is None or OURS not in base.seconds:
            continue
        module = GROUPS[r.group]
        speedup = base.seconds[OURS] / r.seconds[OURS]
        peers = {n: ms for n, ms in r.idle_cpu_ms.items() if n != OURS}
        busiest = max(peers, key=peers.get) if peers else None
        body.append([
            f"{r.group}: {r.case}",
            f"{module.value(base, OURS):.1f} {module.UNIT}",
            f"{module.value(r, OURS):.1f} {module.UNIT}",
            f"{speedup:.2f}",
            f"{r.idle_cpu_ms[OURS]:.0f}",
            f"{peers[busiest]:.0f} ({busiest})" if busiest else "-",
            "yes" if speedup >= 1.0 else "**no**",
        ])  # fmt: skip
    return table(header, body) if body else ""


def render(args, info: dict, rows: list[Row]) -> str:
    command = ["python benchmarks/run_all.py"] + [f"--only {','.join(args.only)}"] * (
        len(args.only) < len(GROUPS)
    )
    command += ["--quick"] * args.quick + ["--ours-only"] * args.ours_only
    command += ["--threads", *map(str, args.threads), "--repeats", str(args.repeats)]
    lines = [
        f"`{' '.join(command)}`",
        "",
        f"- CPU: {info['cpu']}; {info['ours']}; Python {info['python']}.",
        f"- Peers: {info['numpy']}; {info['peers']}.",
        f"- fp32, {' and '.join(map(str, args.threads))} thread(s), median of ≥ {args.repeats} "
        "samples (a sample: back-to-back calls for ≥ 2 ms, or one call when longer, timed "
        "together), every engine in the same process with the same thread count and inputs, "
        f"engines taking turns in {min(ROUNDS, args.repeats)} blocks of samples (each after "
        f"a pause and ≥ 50 ms of warm-up calls, and ≥ {BLOCK_SECONDS * 1e3:.0f} ms long).",
        "- Ratio column: best peer's time / ours (> 1 = transformer_rs is faster).",
    ]
    if args.ours_only:
        lines.append("- --ours-only: every peer left out.")
    if args.quick:
        lines.append("- **--quick: tiny shapes, a smoke test; these numbers mean nothing.**")
    for name in args.only:
        group_rows = [r for r in rows if r.group == name]
        if group_rows:
            lines += ["", f"**{GROUPS[name].TITLE}**", "", group_table(GROUPS[name], group_rows)]
    if len(args.threads) > 1:
        few, many = min(args.threads), max(args.threads)
        threads = threads_table(rows, few, many)
        if threads:
            title = f"**Threads: ours on {many} vs {few} thread(s), and idle CPU after a call**"
            lines += ["", title, "", threads]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child is not None:
        run_child(args)
        return
    info, rows = {}, []
    with tempfile.TemporaryDirectory() as cache_dir:
        for threads in args.threads:
            info, child_rows = measure(args, threads, cache_dir)
            rows += child_rows
    text = render(args, info, rows)
    print(text)
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
