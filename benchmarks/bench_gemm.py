"""GFLOP/s of ``tr.ops.matmul`` next to ``numpy.matmul``, on 1 and 2 threads.

Usage::

    python benchmarks/bench_gemm.py [--threads 1,2] [--repeats 15]

For each thread count the script re-runs itself in a child process with
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set (NumPy's
BLAS reads them only at start-up) and calls ``tr.set_num_threads``. Within a
child both libraries are timed on the same arrays, one after the other, so
load from other processes hits both alike: compare the ratio column. Each
number is the median of ``--repeats`` timed calls after warm-up. Between the
two, the script pauses: OpenBLAS's idle worker threads keep spinning for a
while after each call and would take the cores from the next library's
threads (timing call-by-call alternately halves whichever runs second).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = [
    (1, 512, 512),
    (1, 512, 2048),
    (32, 512, 512),
    (32, 512, 2048),
    (128, 512, 2048),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
]
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Long enough for idle OpenBLAS / rayon workers to stop spinning and sleep.
SETTLE_SECONDS = 0.5


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "numpy BLAS (install threadpoolctl to name it)"
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')})"
    return "numpy BLAS (unknown)"


def measure(threads: int, repeats: int) -> list[dict]:
    """Runs in the child: times both libraries on every shape."""
    import numpy as np

    import transformer_rs as tr

    if not hasattr(tr.ops, "matmul"):
        sys.exit("tr.ops.matmul is not available in this build of transformer_rs")
    tr.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        calls = {
            "tr": lambda a=a, b=b: tr.ops.matmul(a, b),
            "numpy": lambda a=a, b=b: np.matmul(a, b),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for name, call in calls.items():
            time.sleep(SETTLE_SECONDS)
            for _ in range(2):
                call()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        flops = 2.0 * m * k * n
        gflops = {name: flops / statistics.median(ts) / 1e9 for name, ts in times.items()}
        rows.append({"m": m, "k": k, "n": n, "threads": threads, **gflops})
    return rows


def run_child(threads: int, repeats: int) -> list[dict]:
    env = dict(os.environ, **{var: str(threads) for var in THREAD_VARS})
    cmd = [sys.executable, __file__, "--child", str(threads), "--repeats", str(repeats)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per shape (>= 10)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = max(args.repeats, 10)
    if args.child is not None:
        print(json.dumps(measure(args.child, repeats)))
        return

    import numpy as np

    import transformer_rs as tr

    rows = [row for t in (int(x) for x in args.threads.split(",")) for row in run_child(t, repeats)]
    print(f"CPU: {cpu_model()}; transformer_rs kernels: {tr.simd_level()}")
    print(f"numpy {np.__version__}, {blas_description()}; median of {repeats} calls\n")
    print("| M | K | N | threads | tr.ops.matmul GFLOP/s | numpy.matmul GFLOP/s | tr / numpy |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        shape = f"| {r['m']} | {r['k']} | {r['n']} | {r['threads']} |"
        print(f"{shape} {r['tr']:.1f} | {r['numpy']:.1f} | {r['tr'] / r['numpy']:.2f} |")


if __name__ == "__main__":
    main()
