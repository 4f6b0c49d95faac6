"""Running one build step: a child process, its output live, a deadline, no leftovers.

A step is an argument list (a user's own command from their build file runs
as `/bin/sh -c CMD`, which is their code by design; no shell string is ever
built here from input). Output (stdout and stderr merged) reaches the log
line by line as it arrives, up to a cap per step; the last lines of a
failing step are always shown. When the deadline passes, the step's whole
process group is killed; so are processes a finished step left running.
This module never decides what to run, only how.
"""
from __future__ import annotations

import signal
from collections import deque
from pathlib import Path
from typing import Callable, Mapping, Sequence

from dotcloud.errors import BuildError

from .executor import Executor

SHOWN_LINES = 2000       # per step; past this only a count and the last lines
TAIL_LINES = 20          # what a failing step always shows last


def run_step(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
             on_line: Callable[[str], None], executor: Executor) -> int:
    """Run argv; give each output line to on_line live; return the exit status.

    A status below 0 is a signal number. Raises TimeoutError when the
    deadline passes, OSError when the program cannot start; the step's
    process group is killed in every case (the executor holds that promise:
    on the host, the runtime's `run_limited`).
    """
    return executor.run(argv, cwd=cwd, env=env, timeout=timeout, on_line=on_line)


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
               executor: Executor, error: type[Exception] = BuildError) -> None:
    """Run a step; on failure raise `error("LABEL failed (exit N)")` after its output."""
    output = StepOutput(log)
    try:
        status = run_step(argv, cwd=cwd, env=env, timeout=timeout, on_line=output,
                          executor=executor)
    except TimeoutError:
        output.show_tail()
        raise error(f"{label} timed out after {timeout:g}s") from None
    except OSError as e:
        raise error(f"{label} could not start: {e.strerror or e}") from None
    except MemoryError as e:    # the kernel killed it for the service's memory limit
        output.show_tail()
        raise error(f"{label} failed: {e}") from None
    if status != 0:
        output.show_tail()
        raise error(f"{label} failed ({describe_status(status)})")
    output.show_tail()
