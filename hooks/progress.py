"""Progress lines of a push, in dotCloud's shape, written live to stdout.

The SSH daemon relays each line as `remote: ...`. Writing never fails the
pipeline: if the pusher went away, the work still finishes.
"""
import sys
import time


class Progress:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}

    def line(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def step(self, text: str) -> None:
        self.line(f"---> {text}")

    def service(self, name: str):
        """A log callable that prefixes each line with [name]."""
        return lambda text: self.line(f"[{name}] {text}")

    def mark(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - since
        return now

    def timings(self) -> str:
        parts = [f"{k} {v:.2f}s" for k, v in self.phases.items()]
        return ", ".join(parts + [f"total {time.monotonic() - self.started:.2f}s"])
