"""Timing, idle-CPU measurement and result rows shared by every row group.

A row group's ``measure(ctx)`` runs inside one child process per thread count
and returns ``Row``s; ``run_all.py`` turns them into Markdown tables. Every
engine of a row is timed in the same process, on the same inputs, with the same
thread count, one engine after the other, with a pause in between so that a
peer's spinning idle threads do not take the cores from the next engine.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

OURS = "transformer_rs"
# Pause before timing each engine, long enough for a previous engine's idle
# OpenBLAS / OpenMP / ORT workers to stop spinning; also the window in which the
# CPU time burnt by threads left running after a call is measured.
PAUSE_SECONDS = 0.2
WARMUP_SECONDS = 0.05
# Least duration of one timed sample (see timed_calls).
SAMPLE_SECONDS = 0.002
# Least timed duration of one block of samples (see timed_calls): a cheap call
# gets more samples than asked for, at little cost next to the pause and the
# warm-up before the block.
BLOCK_SECONDS = 0.04
# Blocks each engine's timed samples are split into (see time_engines): with
# more turns, a burst of the machine's noise (seconds long on a shared VM)
# lands on every engine alike rather than on one engine's block.
ROUNDS = 5


@dataclasses.dataclass
class Context:
    """What a row group needs to know in the child process."""

    threads: int
    quick: bool
    repeats: int
    with_peers: bool = True
    cache_dir: str | None = None  # shared by the children of one run

    def peer(self, *modules: str) -> bool:
        """Whether to run the peer that needs `modules`: wanted and installed."""
        return self.with_peers and installed(*modules)

    @property
    def pause_seconds(self) -> float:
        """Pause before each engine, and the idle-CPU window (short in --quick)."""
        return 0.01 if self.quick else PAUSE_SECONDS


@dataclasses.dataclass
class Row:
    """One case (a shape) of a row group, measured at one thread count.

    seconds: engine name -> median seconds per call;
    work: what one call does, in the group's unit (FLOPs, tokens, sentences),
    so that work / seconds is the throughput; idle_cpu_ms: engine name -> CPU
    milliseconds the process burnt in the pause after a call returned;
    check: how the engines' outputs compare (a short text);
    target: issue 7's least speed ratio for this case, if any, over
    `target_peer` (None: over the best peer).
    """

    group: str
    case: str
    threads: int
    work: float
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    idle_cpu_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    check: str = ""
    target: float | None = None
    target_peer: str | None = None


def timed_calls(call: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """(seconds per call of each sample after warm-up, last result): at least
    `repeats` samples, and at least BLOCK_SECONDS of them.

    Warm-up is one call, repeated for at least WARMUP_SECONDS: a core that
    idled through the pause before the block runs at a low clock for its
    first milliseconds, which would otherwise be all a microsecond-long
    product's timed calls see. A sample is a batch of back-to-back calls
    lasting about SAMPLE_SECONDS (one call when a call takes longer), timed
    as a whole and divided by its calls: a 20 µs call timed alone is as much
    the timer's and the scheduler's jitter as the engine's."""
    start = time.perf_counter()
    result = call()
    warmup_calls = 1
    while time.perf_counter() - start < WARMUP_SECONDS:
        result = call()
        warmup_calls += 1
    per_call = (time.perf_counter() - start) / warmup_calls
    batch = max(1, round(SAMPLE_SECONDS / per_call))
    samples = max(repeats, math.ceil(BLOCK_SECONDS / (batch * per_call)))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(batch):
            result = call()
        times.append((time.perf_counter() - start) / batch)
    return times, result


def idle_cpu_ms(call: Callable[[], Any], seconds: float) -> float:
    """CPU milliseconds the whole process uses while the caller sleeps for
    `seconds` right after `call` returns: ~0 when the engine's worker threads
    go to sleep, up to threads x seconds when they busy-spin."""
    call()
    start = time.process_time()
    time.sleep(seconds)
    return (time.process_time() - start) * 1e3


def time_engines(row: Row, calls: dict[str, Callable[[], Any]], ctx: Context) -> dict[str, Any]:
    """Times each engine's call into `row` (median seconds and idle CPU);
    returns the last output of each engine for the check column.

    The engines take turns in ROUNDS blocks of samples (A B C A B C), each
    block after a pause and warm-up calls (`timed_calls`), so that a slow
    spell of the machine hits every engine rather than whichever ran then;
    the median is over all of an engine's samples."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    outputs = {}
    rounds = min(ROUNDS, ctx.repeats)
    for block in range(rounds):
        n = ctx.repeats // rounds + (block < ctx.repeats % rounds)
        for name, call in calls.items():
            time.sleep(ctx.pause_seconds)
            block_times, outputs[name] = timed_calls(call, n)
            times[name] += block_times
    for name, call in calls.items():
        row.seconds[name] = statistics.median(times[name])
        time.sleep(ctx.pause_seconds)
        row.idle_cpu_ms[name] = idle_cpu_ms(call, ctx.pause_seconds)
    return outputs


def installed(*modules: str) -> bool:
    """True when every module imports (peers are optional)."""
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        return False
    return True
