"""benchmarks/run_all.py runs end to end (tiny shapes, transformer_rs only):
a smoke test of the benchmark script, not a measurement. No timing is asserted."""

import os
import subprocess
import sys

RUN_ALL = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "run_all.py")


def test_run_all_quick_prints_one_table_per_row_group(tmp_path):
    out = tmp_path / "tables.md"
    cmd = [sys.executable, RUN_ALL, "--quick", "--ours-only", "--threads", "1", "2",
           "--only", "gemm,encoder,generate", "--markdown-out", str(out)]  # fmt: skip
    printed = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    tables = out.read_text()
    assert tables.strip() in printed
    for title in ("Matrix multiply", "Transformer-base encoder", "generation", "Threads"):
        assert title in tables
    generation = tables.split("generation")[1].split("**")[1]
    assert "1/1" not in generation  # no CTranslate2 check without peers
    assert generation.count("| greedy, B=1 |") == 2  # one row per thread count
