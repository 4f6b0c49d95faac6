"""The access log: one line per request in the platform's log format, in batches.

The lines are those structlog renders for the platform (dotcloud.logs:
timestamp, level, event, then the fields; key=value, or JSON with
--log-json), and tests compare the two byte for byte. The router logs every
request, and structlog's bound-logger call with its processor chain cost
about 12 us a line (more than proxying the request), so this module builds
the event itself: key=value lines from one format string, JSON events
through the platform's own structlog renderer. A request only leaves its
raw fields and the time; lines are rendered together when they are written
(one write per flush, not one flushed write per request), which also keeps
the rendering out of the proxy's way between requests. This module never
decides what is logged, only how the lines reach the stream.
"""
from __future__ import annotations

import sys
import time

from dotcloud import logs

MAX_PENDING = 128        # lines rendered and written together, whatever the clock says
FLUSH_DELAY = 0.05       # seconds a line may wait for others to share its write


class AccessLog:
    """request() keeps what the router has (bytes as they came) and the time;
    the lines are rendered when they are written, together: at most
    FLUSH_DELAY later, or every MAX_PENDING requests. The fields that repeat
    from request to request (app to client) are rendered once and remembered."""

    def __init__(self, name: str = "router", stream=None, loop=None):
        self._stream = stream or sys.stderr
        self._loop = loop
        self._component = name
        self._json = logs.renderer() if logs.json_output() else None
        self._stamp = logs.stamp.at
        self._fragments = {}
        self._pending = []

    def request(self, app: str, service: str, instance, method: bytes, path: bytes,
                client: bytes, status: int, nbytes: int, duration_ms: float,
                request_id: bytes | None, detail) -> None:
        pending = self._pending
        pending.append((time.time(), (app, service, instance, method, path, client), status,
                        nbytes, duration_ms, request_id, detail))
        if len(pending) == 1 and self._loop is not None:
            self._loop.call_later(FLUSH_DELAY, self.flush)
        elif len(pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        render = self._render_json if self._json is not None else self._render_kv
        text = "\n".join([render(*entry) for entry in pending]) + "\n"
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass     # a closed or full log stream must not take the router down

    def _render_kv(self, when, key, status, nbytes, duration_ms, request_id, detail) -> str:
        # KeyValueRenderer(key_order=[timestamp, level, event]): those first,
        # then the rest in the order structlog holds them
        fragment = self._fragments.get(key)
        if fragment is None:
            fragment = self._fragment(key)
        rid = request_id.decode() if request_id is not None else None
        # the stamp needs no quoting, and ints print as repr() prints them
        return (f"timestamp='{self._stamp(when)}' level='info' event='request' {fragment} "
                f"status={status} bytes={nbytes} duration_ms={duration_ms!r} "
                f"request_id={rid!r} detail={detail!r}")

    def _render_json(self, when, key, status, nbytes, duration_ms, request_id, detail) -> str:
        # the event as structlog builds it: bound context, fields, event, then
        # what the level and timestamp processors add
        event = dict(zip(_REPEATED, (self._component,) + _decoded(key)))
        event.update(status=status, bytes=nbytes, duration_ms=duration_ms,
                     request_id=request_id.decode() if request_id is not None else None,
                     detail=detail, event="request", level="info", timestamp=self._stamp(when))
        return self._json(None, "info", event)

    def _fragment(self, key: tuple) -> str:
        fragments = self._fragments
        if len(fragments) >= MAX_FRAGMENTS:
            fragments.clear()
        values = (self._component,) + _decoded(key)
        text = fragments[key] = " ".join(f"{k}={v!r}" for k, v in zip(_REPEATED, values))
        return text


# Field order of an access event, as structlog would hold it: the bound
# component, then the keywords in this order.
_REPEATED = ("component", "app", "service", "instance", "method", "path", "client")
MAX_FRAGMENTS = 4096


def _decoded(key: tuple) -> tuple:
    app, service, instance, method, path, client = key
    return (app, service, instance, method.decode("latin-1"), path.decode("latin-1"),
            client.decode("latin-1"))
