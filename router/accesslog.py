"""The access log: one structlog event per request, written in batches.

Events go through the processors the platform configured (dotcloud.logs:
timestamp, level, key=value or JSON), so they look like every other log
line; only the output differs: rendered lines are collected and written
with one write per flush instead of one flushed write per request. This
module never decides what is logged, only how the lines reach the stream.
"""
from __future__ import annotations

import sys

import structlog

MAX_PENDING = 512        # lines kept before a write, whatever the clock says


FLUSH_DELAY = 0.05       # seconds a line may wait for others to share its write


class _LineBuffer:
    """A structlog 'logger': keeps rendered lines until flush()."""

    def __init__(self, stream, loop):
        self._stream = stream
        self._loop = loop
        self._lines = []

    def msg(self, message: str) -> None:
        lines = self._lines
        lines.append(message)
        if len(lines) == 1 and self._loop is not None:
            self._loop.call_later(FLUSH_DELAY, self.flush)
        elif len(lines) >= MAX_PENDING:
            self.flush()

    info = warning = error = msg

    def flush(self) -> None:
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines = []
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                pass     # a closed or full log stream must not take the router down


class AccessLog:
    def __init__(self, name: str = "router", stream=None, loop=None):
        self._buffer = _LineBuffer(stream or sys.stderr, loop)
        config = structlog.get_config()
        self._log = structlog.wrap_logger(
            self._buffer, processors=config["processors"],
            wrapper_class=config["wrapper_class"]).bind(component=name)

    def request(self, **fields) -> None:
        self._log.info("request", **fields)

    def flush(self) -> None:
        self._buffer.flush()
