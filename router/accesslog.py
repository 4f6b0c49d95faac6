"""The access log: one line per request in the platform's log format, in batches.

The lines are those structlog renders for the platform (dotcloud.logs:
timestamp, level, event, then the fields; key=value, or JSON with
--log-json), and tests compare the two byte for byte. The router logs every
request, and structlog's bound-logger call with its processor chain cost
about 12 us a line (more than proxying the request), so this module builds
the event itself: key=value lines from one format string, JSON events
through the platform's own structlog renderer. Lines are collected and
written with one write per flush, not one flushed write per request. This
module never decides what is logged, only how the lines reach the stream.
"""
from __future__ import annotations

import sys

from dotcloud import logs

MAX_PENDING = 512        # lines kept before a write, whatever the clock says
FLUSH_DELAY = 0.05       # seconds a line may wait for others to share its write


class _LineBuffer:
    """Keeps rendered lines until flush()."""

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
    """request() takes what the router has (bytes as they came); the fields
    that repeat from request to request (app to client) are rendered once
    and remembered."""

    def __init__(self, name: str = "router", stream=None, loop=None):
        self._buffer = _LineBuffer(stream or sys.stderr, loop)
        self._component = name
        self._json = logs.renderer() if logs.json_output() else None
        self._now = logs.stamp.now
        self._fragments = {}

    def request(self, app: str, service: str, instance, method: bytes, path: bytes,
                client: bytes, status: int, nbytes: int, duration_ms: float,
                request_id: bytes | None, detail) -> None:
        key = (app, service, instance, method, path, client)
        if self._json is not None:
            # the event as structlog builds it: bound context, fields, event,
            # then what the level and timestamp processors add
            event = dict(zip(_REPEATED, (self._component,) + _decoded(key)))
            event.update(status=status, bytes=nbytes, duration_ms=duration_ms,
                         request_id=request_id.decode() if request_id is not None else None,
                         detail=detail, event="request", level="info", timestamp=self._now())
            line = self._json(None, "info", event)
        else:
            # KeyValueRenderer(key_order=[timestamp, level, event]): those
            # first, then the rest in the order structlog holds them
            fragment = self._fragments.get(key)
            if fragment is None:
                fragment = self._fragment(key)
            rid = request_id.decode() if request_id is not None else None
            line = (f"timestamp={self._now()!r} level='info' event='request' {fragment} "
                    f"status={status!r} bytes={nbytes!r} duration_ms={duration_ms!r} "
                    f"request_id={rid!r} detail={detail!r}")
        self._buffer.msg(line)

    def _fragment(self, key: tuple) -> str:
        fragments = self._fragments
        if len(fragments) >= MAX_FRAGMENTS:
            fragments.clear()
        values = (self._component,) + _decoded(key)
        text = fragments[key] = " ".join(f"{k}={v!r}" for k, v in zip(_REPEATED, values))
        return text

    def flush(self) -> None:
        self._buffer.flush()


# Field order of an access event, as structlog would hold it: the bound
# component, then the keywords in this order.
_REPEATED = ("component", "app", "service", "instance", "method", "path", "client")
FIELDS = _REPEATED + ("status", "bytes", "duration_ms", "request_id", "detail")
MAX_FRAGMENTS = 4096


def _decoded(key: tuple) -> tuple:
    app, service, instance, method, path, client = key
    return (app, service, instance, method.decode("latin-1"), path.decode("latin-1"),
            client.decode("latin-1"))
