"""Resident memory: repeated calls do not grow it, and loading maps weights.

Both read the kernel's own accounting (/proc/self/statm, VmHWM), not
timings. benchmarks/bench_memory.py runs the long versions (10^4 calls, a
Transformer-base-sized checkpoint).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest

import transformer_rs as tr
from transformer_rs.reference.model import random_state_dict

DEMO = files("transformer_rs") / "data" / "date_model"
MB = 1 << 20

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="reads Linux /proc accounting"
)


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_repeated_calls_do_not_grow_resident_memory():
    model = tr.Transformer.load(DEMO)
    rng = np.random.default_rng(0)
    src = rng.integers(3, model.config.src_vocab_size, size=(8, 40))
    ragged = [list(rng.integers(3, model.config.src_vocab_size, size=n)) for n in (30, 9, 17)]
    tgt = rng.integers(3, model.config.tgt_vocab_size, size=(8, 12))

    def calls(n):
        for _ in range(n):
            memory = model.encode(src)
            model.decode(tgt, memory)
            model.generate(ragged, max_new_tokens=20)
            model.generate(ragged[:2], beam_size=3, max_new_tokens=10, return_scores=True)
            tr.ops.matmul(memory, memory.transpose(0, 2, 1))

    # 600 measured calls. One leaked copy of the encoder output per round is
    # 8·40·96·4 B = 120 kB, 14 MB in all; allocator noise stays far below.
    calls(20)  # warm-up: allocator arenas, thread scratch, pools reach their size
    plateau = resident_bytes()
    calls(60)
    middle = resident_bytes()
    calls(60)
    end = resident_bytes()
    assert end - plateau < 6 * MB, (plateau / MB, middle / MB, end / MB)


PEAK_SCRIPT = """
import sys
import transformer_rs as tr

def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # restart the peak (VmHWM) at the current resident size
before = status_kb("VmRSS")
model = tr.Transformer.load(sys.argv[1])
print(status_kb("VmHWM") - before, status_kb("VmRSS") - before)
"""


def test_loading_maps_the_weights_instead_of_copying_them(tmp_path):
    """Linear weights are packed (copied) at load, embeddings stay mapped:
    the peak must stay near the file size, not twice it. A deep model with a
    small vocabulary is the hard case (almost every weight is packed)."""
    config = json.loads((DEMO / "config.json").read_text())
    config.update(d_model=256, n_heads=4, d_ff=1024, n_encoder_layers=4, n_decoder_layers=4)
    config.update(src_vocab_size=2000, tgt_vocab_size=2000, max_len=128)
    tr.Transformer.from_state_dict(random_state_dict(config), config).save(tmp_path)
    n = os.path.getsize(tmp_path / "model.safetensors")
    assert n > 30 * MB
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    peak, after = (int(v) for v in out.stdout.split())
    assert peak <= 1.1 * n, f"peak {peak / MB:.1f} MB for {n / MB:.1f} MB of weights"
    assert after <= peak
