"""GFLOP/s of ``tr.ops.matmul`` next to torch and numpy on 1 and 2 threads
(issue 2's table): the gemm row group of ``run_all.py``.

    python benchmarks/bench_gemm.py [--threads 1 2] [--repeats 15] [--markdown-out FILE]
"""

import sys

import run_all

if __name__ == "__main__":
    run_all.main(["--only", "gemm", *sys.argv[1:]])
