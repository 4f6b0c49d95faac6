"""Running one build step: a child process, its output live, a deadline, no leftovers.

A step is an argument list (a user's own command from their build file runs
as `/bin/sh -c CMD`, which is their code by design; no shell string is ever
built here from input). Output (stdout and stderr merged) reaches the log
line by line as it arrives. When the deadline passes, the step's whole
process group is killed; so are processes a finished step left running.
This module never decides what to run, only how.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Callable, Mapping, Sequence

from dotcloud.errors import BuildError

MAX_LINE = 4096          # longer lines are cut into pieces of this size
SHOWN_LINES = 2000       # per step; past this only a count and the last lines
TAIL_LINES = 20          # what a failing step always shows last
EXIT_GRACE = 1.0         # how long to read after the step exits, for its children's output


def run_step(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
             on_line: Callable[[str], None]) -> int:
    """Run argv; give each output line to on_line live; return the exit status.

    A status below 0 is a signal number (as with subprocess). Raises
    TimeoutError when the deadline passes (after killing the process group),
    OSError when the program cannot be started.
    """
    proc = subprocess.Popen(
        list(argv), cwd=str(cwd), env=dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    reader = _LineReader(on_line)
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    exited_at = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"timed out after {timeout:g}s")
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > EXIT_GRACE:
                break  # a background child still holds the pipe open
            if not selector.select(min(deadline - now, 0.25)):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            reader.feed(chunk)
        reader.close()
    finally:
        selector.close()
        proc.stdout.close()
        _kill_group(proc.pid)
        proc.wait()
    return proc.returncode


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _LineReader:
    """Bytes in, whole decoded lines out; a progress bar's \\r keeps its last state."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.buffer = b""

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.emit(line)
        while len(self.buffer) > MAX_LINE:
            self.emit(self.buffer[:MAX_LINE])
            self.buffer = self.buffer[MAX_LINE:]

    def close(self) -> None:
        if self.buffer:
            self.emit(self.buffer)
            self.buffer = b""

    def emit(self, raw: bytes) -> None:
        parts = [p for p in raw.split(b"\r") if p]
        text = parts[-1].decode("utf-8", "replace") if parts else ""
        self.on_line(text)


class StepOutput:
    """What a person sees of a step: every line live up to a cap, then the tail."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.shown = 0
        self.hidden = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def __call__(self, line: str) -> None:
        self.tail.append(line)
        if self.shown < SHOWN_LINES:
            self.shown += 1
            self.log(line)
        else:
            self.hidden += 1

    def show_tail(self) -> None:
        """Make sure the last lines were seen (they were not if the cap was hit)."""
        if not self.hidden:
            return
        last = min(self.hidden, len(self.tail))
        if self.hidden > last:
            self.log(f"... ({self.hidden - last} lines not shown)")
        for line in list(self.tail)[-last:]:
            self.log(line)
        self.hidden = 0


def describe_status(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit {status}"


def check_step(label: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
               timeout: float, log: Callable[[str], None],
               error: type[Exception] = BuildError) -> None:
    """Run a step; on failure raise `error("LABEL failed (exit N)")` after its output."""
    output = StepOutput(log)
    try:
        status = run_step(argv, cwd=cwd, env=env, timeout=timeout, on_line=output)
    except TimeoutError:
        output.show_tail()
        raise error(f"{label} timed out after {timeout:g}s") from None
    except OSError as e:
        raise error(f"{label} could not start: {e.strerror or e}") from None
    if status != 0:
        output.show_tail()
        raise error(f"{label} failed ({describe_status(status)})")
    output.show_tail()
