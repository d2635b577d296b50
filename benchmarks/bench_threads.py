"""Throughput of 1 vs 2 Python threads calling one shared model.

Every compute call releases the GIL, so Python threads can keep several
cores busy. Their calls share the kernel pool, though: at most
`tr.get_num_threads()` calls compute at a time, each on one or more pool
workers. Two threads therefore help when a single call cannot keep the pool
busy (small calls: one short generation, a small encode) and the pool has
two or more workers; with a one-thread pool they take turns.

For each workload and pool size: calls per second from 1 thread, then from
2 threads each making the same number of calls, and the ratio; "cores busy"
is the process's CPU time over wall time (2.0 = both cores of a 2-core
machine). On a machine shared with other work the ratio is capped by the
cores actually free.

    python benchmarks/bench_threads.py            # a minute or so
    python benchmarks/bench_threads.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import threading
import time
from importlib.resources import files

import numpy as np

import transformer_rs as tr


def workloads(model):
    rng = np.random.default_rng(0)
    cfg = model.config
    one = rng.integers(3, cfg.src_vocab_size, size=(1, 20))
    batch = rng.integers(3, cfg.src_vocab_size, size=(16, 40))
    a = rng.standard_normal((64, 256)).astype(np.float32)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    return {
        "greedy generate, 1 source x 10 tokens": lambda: model.generate(one, max_new_tokens=10),
        "encode [1, 20]": lambda: model.encode(one),
        "encode [16, 40]": lambda: model.encode(batch),
        "ops.linear [64, 256] x [256, 256]": lambda: tr.ops.linear(a, w),
    }


def calls_per_second(call, n_threads: int, calls_per_thread: int) -> tuple[float, float]:
    """(calls per second, cores busy = process CPU time / wall time)."""
    barrier = threading.Barrier(n_threads + 1)

    def run():
        barrier.wait()
        for _ in range(calls_per_thread):
            call()

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return n_threads * calls_per_thread / wall, (time.process_time() - cpu) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few calls, a few seconds")
    args = parser.parse_args()
    seconds = 0.3 if args.quick else 3.0
    model = tr.Transformer.load(files("transformer_rs") / "data" / "date_model")
    print(f"transformer_rs {tr.__version__}, {tr.simd_level()}, demo model (d_model 96)\n")
    print(
        "| workload | pool threads | 1 Python thread: calls/s | cores busy "
        "| 2 Python threads: calls/s | cores busy | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    before = tr.get_num_threads()
    try:
        for name, call in workloads(model).items():
            for pool in (1, 2):
                tr.set_num_threads(pool)
                for _ in range(3):  # warm-up
                    call()
                # Size the run from one thread's speed: about `seconds` each.
                probe, _ = calls_per_second(call, 1, 5)
                n = max(5, int(probe * seconds))
                one, busy_one = calls_per_second(call, 1, n)
                two, busy_two = calls_per_second(call, 2, n)
                print(
                    f"| {name} | {pool} | {one:.0f} | {busy_one:.2f} | {two:.0f} | {busy_two:.2f} "
                    f"| {two / one:.2f} |",
                    flush=True,
                )
    finally:
        tr.set_num_threads(before)


if __name__ == "__main__":
    main()
