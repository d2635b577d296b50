"""The shape of the tr.ops API (names, argument names, defaults), its
reference twin, and the runtime promises: the GIL is released during
compute and concurrent calls from many threads are safe."""

import inspect
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import transformer_rs as tr
from transformer_rs import reference as ref

# From API.md: name -> parameters (name, default or REQUIRED) in order.
REQUIRED = inspect.Parameter.empty
API = {
    "matmul": [("a", REQUIRED), ("b", REQUIRED)],
    "linear": [("x", REQUIRED), ("weight", REQUIRED), ("bias", None)],
    "softmax": [("x", REQUIRED), ("axis", -1)],
    "log_softmax": [("x", REQUIRED), ("axis", -1)],
    "layer_norm": [("x", REQUIRED), ("weight", REQUIRED), ("bias", REQUIRED), ("eps", 1e-5)],
    "relu": [("x", REQUIRED)],
    "gelu": [("x", REQUIRED)],
    "scaled_dot_product_attention": [
        ("q", REQUIRED),
        ("k", REQUIRED),
        ("v", REQUIRED),
        ("attn_mask", None),
        ("is_causal", False),
        ("scale", None),
    ],
    "multi_head_attention": [
        ("query", REQUIRED),
        ("key", REQUIRED),
        ("value", REQUIRED),
        ("num_heads", REQUIRED),
        ("in_proj_weight", REQUIRED),
        ("in_proj_bias", REQUIRED),
        ("out_proj_weight", REQUIRED),
        ("out_proj_bias", REQUIRED),
        ("key_padding_mask", None),
        ("attn_mask", None),
        ("is_causal", False),
    ],
}


def test_ops_exports_exactly_the_api():
    assert sorted(tr.ops.__all__) == sorted(API)
    assert set(API) <= set(ref.__all__)


@pytest.mark.parametrize("module", [tr.ops, ref], ids=["ops", "reference"])
@pytest.mark.parametrize("name", sorted(API))
def test_signature_matches_the_api(module, name):
    fn = getattr(module, name)
    params = [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]
    assert params == API[name]
    assert fn.__doc__ and fn.__doc__.strip()


def _big_inputs():
    rng = np.random.default_rng(0)
    e = 64
    # Each call must take a few milliseconds, long enough for the waiting
    # main thread to be scheduled while the GIL is free.
    x = rng.standard_normal((4, 384, e)).astype(np.float32)
    w_in = rng.standard_normal((3 * e, e)).astype(np.float32)
    w_out = rng.standard_normal((e, e)).astype(np.float32)
    m = rng.standard_normal((512, 512)).astype(np.float32)
    rows = rng.standard_normal((2048, 1024)).astype(np.float32)
    return {
        "matmul": lambda: tr.ops.matmul(m, m),
        "softmax": lambda: tr.ops.softmax(rows),
        "scaled_dot_product_attention": lambda: tr.ops.scaled_dot_product_attention(x, x, x),
        "multi_head_attention": lambda: tr.ops.multi_head_attention(
            x, x, x, 4, w_in, None, w_out, None
        ),
    }


@pytest.mark.parametrize("name", sorted(_big_inputs()))
def test_compute_releases_the_gil(name):
    """The worker thread reads a counter the main thread keeps incrementing
    just before and just after one op call. With the interpreter's switch
    interval made huge, the main thread can only run in between if the call
    released the GIL (the only other switch points are long after). A call
    that holds the GIL shows no progress however often it runs, so a few
    calls are allowed for the scheduler to wake the main thread in time."""
    call = _big_inputs()[name]
    counter = [0]
    seen = {}
    done = threading.Event()

    def worker():
        seen["progress"] = 0
        for _ in range(5):
            before = counter[0]
            call()
            seen["progress"] = max(seen["progress"], counter[0] - before)
            if seen["progress"]:
                break
        done.set()

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        while not done.is_set():
            counter[0] += 1
        thread.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert seen["progress"] > 0


def test_concurrent_calls_from_many_threads_agree():
    rng = np.random.default_rng(1)
    e = 16
    inputs = [rng.standard_normal((2, 9, e)).astype(np.float32) for _ in range(8)]
    w_in = rng.standard_normal((3 * e, e)).astype(np.float32)
    w_out = rng.standard_normal((e, e)).astype(np.float32)

    def run(x):
        return tr.ops.multi_head_attention(x, x, x, 4, w_in, None, w_out, None, is_causal=True)

    serial = [run(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, inputs * 3))
    for i, out in enumerate(parallel):
        np.testing.assert_array_equal(out, serial[i % len(inputs)])
