"""fork() after the kernel thread pool has started.

fork copies only the calling thread, so a child inherits a pool whose workers
do not exist; transformer_rs starts a fresh pool of the same size in the
child on its first call. Every case runs in its own interpreter, in a new
process group that is killed after a timeout, so a deadlock fails the test
instead of hanging the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from importlib.resources import files

import pytest

DEMO = str(files("transformer_rs") / "data" / "date_model")
TIMEOUT = 60

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# Shared by every script: a model, inputs, and work that uses the pool.
PRELUDE = f"""
import os, sys, threading
import numpy as np
import transformer_rs as tr

model = tr.Transformer.load({DEMO!r})
rng = np.random.default_rng(0)
src = rng.integers(3, model.config.src_vocab_size, size=(6, 25))
a = rng.standard_normal((300, 200)).astype(np.float32)
b = rng.standard_normal((200, 250)).astype(np.float32)

def work():
    return (
        model.encode(src).tobytes(),
        model.generate(src, max_new_tokens=12),
        model.generate(src[:2], beam_size=3, max_new_tokens=8, return_scores=True),
        tr.ops.matmul(a, b).tobytes(),
        tr.ops.softmax(a).tobytes(),
    )

def pool_threads():
    # Worker threads are named transformer-rs-<i> (cut to 15 characters).
    tasks = os.listdir("/proc/self/task")
    names = [open(f"/proc/self/task/{{t}}/comm").read().strip() for t in tasks]
    return sum(n.startswith("transformer-rs") for n in names)

def wait_ok(pid):
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed: {{status}}"
"""


def run_script(body: str) -> str:
    """Runs PRELUDE + body in a fresh interpreter; fails on a non-zero exit
    or after TIMEOUT seconds (killing the script and every process it forked)."""
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"deadlock: the script did not finish within {TIMEOUT} s")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def test_child_computes_the_same_results_with_the_same_pool_size():
    out = run_script(
        """
        tr.set_num_threads(3)
        expected = work()  # the parent's pool is running when it forks
        assert pool_threads() == 3
        pid = os.fork()
        if pid == 0:
            try:
                assert tr.get_num_threads() == 3
                assert work() == expected
                assert pool_threads() == 3, pool_threads()  # a fresh pool of 3 live workers
                tr.set_num_threads(1)
                assert work() == expected
                code = 0
            except BaseException as e:
                print("child:", repr(e), file=sys.stderr)
                code = 1
            os._exit(code)
        wait_ok(pid)
        assert work() == expected  # the parent's pool is untouched
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_grandchild_and_repeated_forks():
    run_script(
        """
        expected = work()
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                ok = work() == expected
                grandchild = os.fork()
                if grandchild == 0:
                    os._exit(0 if work() == expected else 1)
                _, status = os.waitpid(grandchild, 0)
                os._exit(0 if ok and status == 0 else 1)
            wait_ok(pid)
        """
    )


def test_fork_while_other_threads_are_computing():
    """Threads busy in the pool (and taking its lock) while the main thread
    forks: the child must not inherit anything locked."""
    run_script(
        """
        expected = work()
        stop = threading.Event()
        errors = []

        def busy():
            try:
                while not stop.is_set():
                    assert tr.ops.matmul(a, b).tobytes() == expected[3]
                    tr.get_num_threads()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=busy) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(10):
                pid = os.fork()
                if pid == 0:
                    os._exit(0 if work() == expected else 1)
                wait_ok(pid)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors
        """
    )


def test_fork_before_the_pool_ever_started():
    run_script(
        """
        pid = os.fork()
        if pid == 0:
            os._exit(0 if len(work()) == 5 else 1)
        wait_ok(pid)
        """
    )


def test_multiprocessing_fork_pool():
    run_script(
        """
        import multiprocessing as mp

        tr.set_num_threads(2)
        expected = work()

        def child_work(_):
            return work(), tr.get_num_threads()

        # The workers inherit the model through fork (nothing is pickled).
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(child_work, range(4))
        assert all(r == (expected, 2) for r in results)
        """
    )
