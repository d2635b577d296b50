"""One model (and the ops) shared by many Python threads.

Models are immutable after loading and every compute call releases the GIL:
results from 8 threads calling at once must equal, bit for bit, the serial
results, and another thread must be able to run Python code while a compute
call is in progress (checked through events, not timings).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

import transformer_rs as tr
from bert_helpers import minilm_dir
from transformer_rs import _native
from transformer_rs.reference.model import random_state_dict

DEMO = files("transformer_rs") / "data" / "date_model"
TINY = Path(__file__).parent / "data" / "tiny_post_ln"
N_THREADS = 8


@pytest.fixture(scope="module")
def model():
    return tr.Transformer.load(DEMO)


def same(a, b) -> bool:
    """Bitwise equality of results: arrays (dtype, shape, bits) or nested lists."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    return a == b


def run_concurrently(tasks, n_threads=N_THREADS, rounds=2):
    """Runs every task from each of `n_threads` threads (each in its own
    rotated order, all released at once by a barrier) and returns, per
    thread, {task index: [results]}. Exceptions are re-raised here."""
    barrier = threading.Barrier(n_threads)
    results = [dict() for _ in range(n_threads)]
    errors = []

    def worker(t):
        try:
            barrier.wait()
            order = list(range(len(tasks)))
            order = order[t % len(order) :] + order[: t % len(order)]
            for _ in range(rounds):
                for i in order:
                    results[t].setdefault(i, []).append(tasks[i]())
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return results


def assert_concurrent_equals_serial(tasks, rounds=2):
    serial = [task() for task in tasks]
    for per_thread in run_concurrently(tasks, rounds=rounds):
        for i, outs in per_thread.items():
            for out in outs:
                assert same(out, serial[i]), f"task {i} differs from its serial result"


def model_tasks(model):
    rng = np.random.default_rng(0)
    cfg = model.config
    srcs = [
        rng.integers(3, cfg.src_vocab_size, size=(b, s)).astype(np.int64)
        for b, s in [(1, 7), (3, 19), (8, 30), (2, 1)]
    ]
    ragged = [list(rng.integers(3, cfg.src_vocab_size, size=n)) for n in (12, 3, 25)]
    tgt = np.concatenate(
        [np.full((3, 1), cfg.bos_id), rng.integers(3, cfg.tgt_vocab_size, size=(3, 9))], axis=1
    )
    memory = model.encode(srcs[1])
    mask = srcs[1] == cfg.pad_id
    mask[0, -4:] = True
    return [
        *[lambda s=s: model.encode(s) for s in srcs],
        lambda: model.encode(ragged),
        lambda: model.decode(tgt, memory),
        lambda: model.decode(tgt, memory, memory_key_padding_mask=mask),
        lambda: model.forward(srcs[1], tgt),
        lambda: model.generate(srcs[0], max_new_tokens=5),
        lambda: model.generate(srcs[2], max_new_tokens=20),
        lambda: model.generate(ragged, max_new_tokens=12, return_scores=True),
        lambda: model.generate(srcs[1], beam_size=2, max_new_tokens=15),
        lambda: model.generate(
            srcs[2], beam_size=4, num_hypotheses=3, length_penalty=0.6, max_new_tokens=10
        ),
        lambda: model.generate(ragged, beam_size=3, length_penalty=1.3, max_new_tokens=20),
    ]


def test_one_model_from_8_threads_equals_serial(model):
    assert_concurrent_equals_serial(model_tasks(model))


def test_two_models_from_8_threads_equal_serial(model):
    tiny = tr.Transformer.load(TINY)
    assert_concurrent_equals_serial(model_tasks(model) + model_tasks(tiny))


def op_tasks():
    rng = np.random.default_rng(1)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    a, b = f32(3, 70, 130), f32(130, 90)
    big_a, big_b = f32(200, 256), f32(256, 300)
    x, w, bias = f32(4, 33, 64), f32(96, 64), f32(96)
    row, gamma, beta = f32(130), f32(64), f32(64)
    q, k, v = f32(2, 4, 17, 16), f32(2, 4, 23, 16), f32(2, 4, 23, 16)
    mask = rng.random((17, 23)) > 0.3
    e, heads = 32, 4
    seq = f32(2, 11, e)
    in_w, in_b, out_w, out_b = f32(3 * e, e), f32(3 * e), f32(e, e), f32(e)
    padding = np.zeros((2, 11), bool)
    padding[1, 7:] = True
    return [
        lambda: tr.ops.matmul(a, b),
        lambda: tr.ops.matmul(big_a, big_b),
        lambda: tr.ops.matmul(row, b[:, :7]),
        lambda: tr.ops.linear(x, w, bias),
        lambda: tr.ops.softmax(a, axis=1),
        lambda: tr.ops.log_softmax(a),
        lambda: tr.ops.layer_norm(x, gamma, beta, eps=1e-3),
        lambda: tr.ops.relu(big_a),
        lambda: tr.ops.gelu(big_a),
        lambda: tr.ops.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        lambda: tr.ops.scaled_dot_product_attention(q, q, q, is_causal=True),
        lambda: tr.ops.multi_head_attention(
            seq, seq, seq, heads, in_w, in_b, out_w, out_b, key_padding_mask=padding
        ),
    ]


def test_sentence_encoder_from_8_threads_equals_serial():
    encoder = tr.SentenceEncoder.load(minilm_dir())
    sentences = ["A man is eating food.", "", "Un chat dort.", "The quick brown fox " * 8]
    assert_concurrent_equals_serial(
        [
            lambda: encoder.encode(sentences),
            lambda: encoder.encode(sentences[2], normalize_embeddings=False),
            lambda: encoder.encode(sentences * 2, batch_size=3),
        ],
        rounds=1,
    )


def test_ops_from_8_threads_equal_serial():
    assert_concurrent_equals_serial(op_tasks())


def test_threads_calling_while_the_pool_is_resized(model):
    """set_num_threads from one thread while others compute: calls already
    running finish on the old pool, and results do not depend on its size."""
    tasks = model_tasks(model)[:8]
    serial = [task() for task in tasks]
    before = tr.get_num_threads()
    stop = threading.Event()

    def resize():
        n = 0
        while not stop.is_set():
            tr.set_num_threads(1 + n % 3)
            n += 1

    resizer = threading.Thread(target=resize)
    resizer.start()
    try:
        for per_thread in run_concurrently(tasks, n_threads=4, rounds=1):
            for i, outs in per_thread.items():
                assert all(same(out, serial[i]) for out in outs), f"task {i}"
    finally:
        stop.set()
        resizer.join()
        tr.set_num_threads(before)


# --------------------------------------------------------------------------
# The GIL is released during every compute call.


@contextmanager
def gil_switches_only_when_blocking():
    """Stops the interpreter from handing the GIL to another thread on a
    timer: a thread keeps it until it blocks or native code releases it."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def another_thread_runs_during(call, give_up_after=20.0) -> bool:
    """Whether another Python thread executes while `call()` is in progress.

    With timer switches off, this thread holds the GIL except inside `call()`
    (which must be a native function given ready-made arguments: nothing else
    here blocks). The other thread, woken by `go`, needs the GIL to record its
    tick and exit; so a tick seen after `call()` returns was made during it.
    `call()` is repeated until the tick appears (the woken thread may need
    several chances to be scheduled), and fails after `give_up_after` seconds.
    """
    go = threading.Event()
    ticks = []

    def other():
        go.wait()
        ticks.append(1)

    t = threading.Thread(target=other)
    with gil_switches_only_when_blocking():
        t.start()  # `other` runs until it blocks in go.wait()
        go.set()
        assert not ticks
        deadline = time.monotonic() + give_up_after
        while not ticks and time.monotonic() < deadline:
            call()
        seen = bool(ticks)
    t.join()
    return seen


def _native_calls():
    """Every compute entry point of _native, with ready-made arguments."""
    rng = np.random.default_rng(2)

    def f32(*shape):
        return np.ascontiguousarray(rng.standard_normal(shape), dtype=np.float32)

    a, b = f32(256, 256), f32(256, 256)
    x, w = f32(64, 512), f32(300, 512)
    q = f32(4, 64, 32)
    e = 64
    seq = f32(4, 32, e)
    in_w, in_b, out_w, out_b = f32(3 * e, e), f32(3 * e), f32(e, e), f32(e)
    demo = tr.Transformer.load(DEMO)
    native = demo._native
    cfg = demo.config
    src = rng.integers(3, cfg.src_vocab_size, size=(4, 30)).astype(np.int64)
    tgt = rng.integers(3, cfg.tgt_vocab_size, size=(4, 12)).astype(np.int64)
    memory = native.encode(src)
    mask = np.zeros(src.shape, bool)
    state = random_state_dict(cfg.to_dict(), seed=0)
    names = sorted(state)
    arrays = [np.ascontiguousarray(state[n], dtype=np.float32) for n in names]
    config_json = native.config_json
    bert = tr.BertModel.load(minilm_dir())._native
    ids = rng.integers(1000, 2000, size=(4, 64)).astype(np.int64)
    bert_padding = np.zeros(ids.shape, bool)
    return {
        "relu": lambda: _native.relu(x),
        "gelu": lambda: _native.gelu(x),
        "matmul": lambda: _native.matmul(a, b),
        "linear": lambda: _native.linear(x, w, w[:, 0].copy()),
        "softmax": lambda: _native.softmax(x),
        "log_softmax": lambda: _native.log_softmax(x),
        "layer_norm": lambda: _native.layer_norm(x, x[0], x[1], 1e-5),
        "scaled_dot_product_attention": lambda: _native.scaled_dot_product_attention(q, q, q),
        "multi_head_attention": lambda: _native.multi_head_attention(
            seq, seq, seq, 4, in_w, in_b, out_w, out_b
        ),
        "Transformer.load": lambda: _native.NativeTransformer.load(str(DEMO)),
        "Transformer.from_state_dict": lambda: _native.NativeTransformer.from_tensors(
            config_json, names, arrays
        ),
        "Transformer.encode": lambda: native.encode(src),
        "Transformer.decode": lambda: native.decode(tgt, memory, mask),
        "Transformer.forward": lambda: native.forward(src, tgt),
        "Transformer.generate(greedy)": lambda: native.generate(src, 20, 1, 1.0, 1, False),
        "Transformer.generate(beam)": lambda: native.generate(src, 20, 3, 1.0, 2, True),
        "BertModel.load": lambda: _native.NativeBertModel.load(str(minilm_dir())),
        "BertModel.forward": lambda: bert.forward(ids, bert_padding, None),
    }


NATIVE_CALLS = _native_calls()


@pytest.mark.parametrize("entry_point", sorted(NATIVE_CALLS))
def test_compute_releases_the_gil(entry_point):
    assert another_thread_runs_during(NATIVE_CALLS[entry_point])


def test_save_releases_the_gil(tmp_path):
    native = tr.Transformer.load(DEMO)._native
    path = str(tmp_path / "copy")
    assert another_thread_runs_during(lambda: native.save(path))


def test_a_call_holding_the_gil_is_detected():
    """The check can fail: a C call that keeps the GIL (the builtin sum over a
    range) lets no other thread tick, while one that releases it does."""
    assert not another_thread_runs_during(lambda: sum(range(200_000)), give_up_after=0.5)
    assert another_thread_runs_during(lambda: time.sleep(0.001))
