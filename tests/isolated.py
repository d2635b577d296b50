"""A long-lived child interpreter for cases that might crash the process.

A hostile input that aborted, segfaulted or hung inside the native module
would take pytest down with it. :class:`Worker` runs such cases in one child
Python (started once, reused for many cases, restarted after a crash) and
reports, per case, which exception came out, so the test can assert it; a
crash or hang becomes an ordinary test failure naming the case.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# The child: executes each request's code in one persistent namespace and
# answers with the exception it raised (or none). Its stdout is the protocol
# channel only; anything the code prints goes to stderr.
_CHILD = r"""
import faulthandler, json, sys
faulthandler.enable()
channel, sys.stdout = sys.stdout, sys.stderr
namespace = {}
for line in sys.stdin:
    request = json.loads(line)
    try:
        exec(request["code"], namespace)
        answer = {"raised": None}
    except BaseException as e:
        answer = {
            "raised": type(e).__name__,
            "classes": [c.__name__ for c in type(e).__mro__],
            "message": str(e),
        }
    channel.write(json.dumps(answer) + "\n")
    channel.flush()
"""


@dataclass
class Outcome:
    """What one case did in the child: the exception's class name, the names
    of its classes (MRO) and its message; ``raised`` is None on success."""

    raised: str | None
    classes: list[str]
    message: str

    def is_a(self, class_name: str) -> bool:
        return class_name in self.classes


class WorkerDied(AssertionError):
    """The child crashed or hung while running a case."""


class Worker:
    """One child interpreter; :meth:`run` sends it code and returns the
    :class:`Outcome`. ``setup`` runs first in every (re)started child."""

    def __init__(self, setup: str = "", timeout: float = 120.0) -> None:
        self._setup = setup
        self._timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._stderr = None

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        if self._setup:
            outcome = self._send(self._setup)
            if outcome.raised:
                raise RuntimeError(f"worker setup failed: {outcome.raised}: {outcome.message}")

    def run(self, code: str) -> Outcome:
        """Runs ``code`` in the child; :class:`WorkerDied` (with the child's
        exit status and the end of its stderr) if it crashes or hangs."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        return self._send(code)

    def _send(self, code: str) -> Outcome:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"code": code}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # reported below, with the exit status
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(self._timeout)
        line = proc.stdout.readline() if ready else ""
        if not line:
            hung = not ready
            if hung:
                proc.kill()
            status = proc.wait()
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace")[-3000:]
            self._proc = None
            what = f"hung for {self._timeout} s" if hung else f"died with status {status}"
            raise WorkerDied(f"child interpreter {what} running:\n{code}\n--- stderr ---\n{tail}")
        answer = json.loads(line)
        return Outcome(answer["raised"], answer.get("classes", []), answer.get("message", ""))

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
