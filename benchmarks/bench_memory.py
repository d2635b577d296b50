"""Resident memory of transformer_rs: repeated calls, and loading a checkpoint.

1. Repeated calls: the bundled demo model runs encode + greedy generate
   10^4 times; resident memory (RSS) is printed every tenth of the run, and
   its growth after a warm-up is the figure (it should be allocator noise).
2. Loading: a random checkpoint of N bytes of float32 weights is written to a
   temporary folder and loaded in a fresh interpreter; the figure is the peak
   RSS during `Transformer.load` over N (target <= 1.1: weights are mapped,
   and the packed copy of each Linear weight replaces, rather than joins, its
   file pages), plus what stays resident afterwards (anonymous = packed
   weights, file = mapped pages still in use).

    python benchmarks/bench_memory.py            # the real thing (about a minute)
    python benchmarks/bench_memory.py --quick    # small, smoke test

Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from importlib.resources import files

import numpy as np

import transformer_rs as tr
from transformer_rs.reference.model import random_state_dict

MiB = 1 << 20
BASE = {
    "d_model": 512, "n_heads": 8, "d_ff": 2048, "n_encoder_layers": 6, "n_decoder_layers": 6,
    "src_vocab_size": 32000, "tgt_vocab_size": 32000, "max_len": 512, "activation": "relu",
    "norm_first": True, "layer_norm_eps": 1e-5, "pad_id": 0, "bos_id": 1, "eos_id": 2,
}  # fmt: skip
LOAD_CASES = {
    "Transformer-base, vocab 32000": BASE,
    "Transformer-base layers, vocab 1000": {**BASE, "src_vocab_size": 1000, "tgt_vocab_size": 1000},
}
QUICK_CASES = {
    "small, vocab 8000": {**BASE, "d_model": 128, "n_heads": 4, "d_ff": 512,
                          "src_vocab_size": 8000, "tgt_vocab_size": 8000},
}  # fmt: skip

# Run in a fresh interpreter: restarts the peak at the current RSS, loads,
# and prints (peak - before, after - before, RssAnon after, RssFile after).
PEAK_SCRIPT = """
import sys
import transformer_rs as tr

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
model = tr.Transformer.load(sys.argv[1])
print(status("VmHWM") - before, status("VmRSS") - before, status("RssAnon"), status("RssFile"))
"""


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def repeated_calls(n_calls: int) -> None:
    model = tr.Transformer.load(files("transformer_rs") / "data" / "date_model")
    rng = np.random.default_rng(0)
    cfg = model.config
    src = rng.integers(3, cfg.src_vocab_size, size=(8, 40))
    ragged = [list(rng.integers(3, cfg.src_vocab_size, size=n)) for n in (30, 9, 17)]

    def call():
        model.encode(src)
        model.generate(ragged, max_new_tokens=20)

    for _ in range(100):  # warm-up
        call()
    start, t0 = resident_bytes(), time.perf_counter()
    print(f"\n## {n_calls} x (encode [8, 40] + greedy generate, 3 sources x 20 tokens)\n")
    print("| calls | RSS MiB | growth since warm-up MiB |")
    print("|---:|---:|---:|")
    print(f"| 0 | {start / MiB:.1f} | 0.0 |")
    step = max(1, n_calls // 10)
    for i in range(1, n_calls + 1):
        call()
        if i % step == 0:
            now = resident_bytes()
            print(f"| {i} | {now / MiB:.1f} | {(now - start) / MiB:+.1f} |")
    print(f"\n{n_calls} calls in {time.perf_counter() - t0:.1f} s")


def load_peak(name: str, config: dict) -> str:
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as folder:
        model = tr.Transformer.from_state_dict(random_state_dict(config, seed=0), config)
        model.save(folder)
        del model
        n = os.path.getsize(os.path.join(folder, "model.safetensors"))
        out = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, folder],
            capture_output=True,
            text=True,
            check=True,
        )
    peak, after, anon, file = (int(v) for v in out.stdout.split())
    return (
        f"| {name} | {n / MiB:.0f} | {peak / MiB:.0f} | {peak / n:.2f} | {after / MiB:.0f} "
        f"| {after / n:.2f} | {anon / MiB:.0f} | {file / MiB:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--calls", type=int, default=None, help="repeated calls (default 10^4)")
    args = parser.parse_args()
    print(f"transformer_rs {tr.__version__}, {tr.simd_level()}, {tr.get_num_threads()} threads")
    repeated_calls(args.calls or (300 if args.quick else 10_000))
    print("\n## Loading a checkpoint of N bytes (float32), peak RSS in a fresh process\n")
    print(
        "| checkpoint | N MiB | peak during load MiB | peak / N | resident after MiB | after / N "
        "| process RssAnon MiB | process RssFile MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, config in (QUICK_CASES if args.quick else LOAD_CASES).items():
        print(load_peak(name, config), flush=True)


if __name__ == "__main__":
    main()
