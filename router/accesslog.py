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
    def __init__(self, name: str = "router", stream=None, loop=None):
        self._buffer = _LineBuffer(stream or sys.stderr, loop)
        self._component = name
        self._json = logs.renderer() if logs.json_output() else None
        self._now = logs.stamp.now

    def request(self, app, service, instance, method, path, status, nbytes, duration_ms,
                request_id, client, detail) -> None:
        if self._json is not None:
            # the event as structlog builds it: bound context, fields, event,
            # then what the level and timestamp processors add
            event = {"component": self._component, "app": app, "service": service,
                     "instance": instance, "method": method, "path": path,
                     "status": status, "bytes": nbytes, "duration_ms": duration_ms,
                     "request_id": request_id, "client": client, "detail": detail,
                     "event": "request", "level": "info", "timestamp": self._now()}
            line = self._json(None, "info", event)
        else:
            # KeyValueRenderer(key_order=[timestamp, level, event]): those
            # first, then the rest in the order structlog holds them
            line = (f"timestamp={self._now()!r} level='info' event='request' "
                    f"component={self._component!r} app={app!r} service={service!r} "
                    f"instance={instance!r} method={method!r} path={path!r} "
                    f"status={status!r} bytes={nbytes!r} duration_ms={duration_ms!r} "
                    f"request_id={request_id!r} client={client!r} detail={detail!r}")
        self._buffer.msg(line)

    def flush(self) -> None:
        self._buffer.flush()
