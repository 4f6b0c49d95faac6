"""The client side of the router: one asyncio.Protocol per client connection.

It parses requests with httptools, enforces the limits that keep malformed,
ambiguous and slow requests out, queues pipelined requests so responses go
back in order, applies backpressure both ways, and turns into a raw tunnel
after a successful Upgrade. Routing and forwarding belong to the Router and
the Exchange; this module never chooses an upstream itself.
"""
from __future__ import annotations

import asyncio
from time import monotonic
from collections import deque

import httptools

from . import pages
from .router import KNOWN_REQUEST_MAX

_PAUSE_UPSTREAM, _PAUSE_PIPELINE, _PAUSE_BUFFER, _PAUSE_UPGRADE = 1, 2, 4, 8


class _Reject(Exception):
    pass


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "router", "settings", "loop", "parser", "transport", "client_ip", "queue",
        "parsing", "url", "headers", "header_bytes", "in_head", "fresh", "head_bytes",
        "begin_at", "reject", "paused", "write_paused", "closing", "upgrade_buf",
        "tunnel", "activity", "seen_activity", "progress_at", "idle_since",
        "pending_error", "head_limit", "body_expected", "body_seen", "body_left",
        "messages", "body_since", "body_mark", "known")

    secure = False          # TLSClientConnection: the same protocol over a TLS transport
    proto = b"http"         # X-Forwarded-Proto

    def __init__(self, router):
        self.router = router
        # requests seen before on this kind of connection (their heads differ by scheme)
        self.known = router.known_tls if self.secure else router.known
        self.settings = router.settings
        self.loop = router.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.client_ip = b""
        self.queue = deque()       # exchanges in request order; [0] is being answered
        self.parsing = None        # the exchange whose request body is arriving
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.in_head = False
        self.fresh = True          # no request started yet on this connection
        self.head_bytes = 0
        self.begin_at = 0.0
        self.reject = None
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.upgrade_buf = None    # bytes after an Upgrade request, until the tunnel opens
        self.tunnel = None         # the UpstreamConnection once tunnelled
        self.activity = 0
        self.seen_activity = 0
        self.progress_at = 0.0
        self.idle_since = 0.0
        self.pending_error = None
        self.head_limit = self.settings.max_request_line + self.settings.max_header_bytes
        self.body_expected = 0     # Content-Length of the request body being received
        self.body_seen = 0         # of it, seen by the parser
        self.body_left = 0         # still to come, passed on without the parser
        self.messages = 0          # requests begun in the current read
        self.body_since = 0.0      # start of the current body-rate window (0: none)
        self.body_mark = 0         # `activity` at that start

    # -- connection events -------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = (peer[0] if peer else "").encode()
        now = monotonic()
        self.begin_at = self.idle_since = self.progress_at = now
        self.router.connections.add(self)

    def connection_lost(self, exc):
        self.closing = True
        self.router.connections.discard(self)
        queue, self.queue = self.queue, deque()
        for exchange in queue:
            exchange.abort()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.close()

    def data_received(self, data):
        tunnel = self.tunnel
        if tunnel is not None:
            if not tunnel.closed:
                tunnel.transport.write(data)
            return
        self.activity += len(data)     # bytes received: progress, and the body rate
        if self.upgrade_buf is not None:
            self.upgrade_buf.append(data)
            return
        if self.closing:
            return
        left = self.body_left
        if left:
            # the rest of a Content-Length body: counted and passed on as it came,
            # without a copy through the parser
            size = len(data)
            exchange = self.parsing
            if size < left:
                self.body_left = left - size
                exchange.request_body(data)
                return
            self.body_left = 0
            self.parsing = None
            exchange.request_body(data if size == left else data[:left])
            exchange.request_complete()
            if size == left or self.closing:
                return
            data = data[left:]       # a pipelined request follows
        between = not self.in_head and self.parsing is None and not self.queue
        if between:
            # every earlier request answered and kept alive: a request seen
            # before, whole in this read, needs neither the parser nor the
            # rewriting again
            known = (self.known.get((data, self.client_ip))
                     if len(data) <= KNOWN_REQUEST_MAX else None)   # a large read is a body
            if known is not None:
                # what the parser callbacks do for a request, without the parser
                self.fresh = False
                self.begin_at = now = monotonic()
                exchange = self.router.open_known(self, known, now)
                self.queue.append(exchange)     # the queue was empty: it goes at once
                exchange.start_whole(now)
                return
            self.messages = 0
        elif self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if not self.queue:
                self.close()            # already answered (an error page): nothing to tunnel
            elif not self.closing:
                self.upgrade_buf = [data[exc.args[0]:]]
                self._pause(_PAUSE_UPGRADE)
        except httptools.HttpParserCallbackError as exc:
            if self.reject is not None:
                self._reject(*self.reject)
            else:
                self.router.log.error("router_bug", exc_info=exc.__context__ or exc)
                self._reject(400, "internal error")
        except httptools.HttpParserError as exc:
            reason = str(exc).strip()
            if reason == "Invalid HTTP version":
                # a well-formed request line of a version llhttp does not know
                self._reject(505, "only HTTP/1.0 and HTTP/1.1 are served here")
            else:
                self._reject(400, reason or "malformed request")
        else:
            if self.in_head and self.head_bytes > self.head_limit:
                self._reject(431, "request head too large")
            elif self.body_expected and self.parsing is not None:
                # this body continues beyond what the parser saw: the rest
                # bypasses it, and a fresh parser takes the next request
                self.body_left = self.body_expected - self.body_seen
                self.body_expected = 0
                self.parser = httptools.HttpRequestParser(self)
            elif (between and self.messages == 1 and not self.in_head
                  and self.parsing is None and len(self.queue) == 1 and not self.closing):
                # exactly one whole request, and nothing else, was in this read
                self.router.remember_request(data, self.queue[-1])

    # -- httptools request callbacks ---------------------------------------

    def on_message_begin(self):
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.in_head = True
        self.fresh = False
        self.messages += 1
        self.head_bytes = 0
        self.begin_at = monotonic()

    def on_url(self, url):
        url = self.url + url if self.url else url
        self.url = url
        if len(url) > self.settings.max_request_line:
            self.reject = (414, "request line too long")
            raise _Reject

    def on_header(self, name, value):
        if not self.in_head:
            return      # a trailer: not forwarded
        headers = self.headers
        headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4
        if (self.header_bytes > self.settings.max_header_bytes
                or len(headers) > self.settings.max_headers):
            self.reject = (431, "request headers too large")
            raise _Reject

    def on_headers_complete(self):
        self.in_head = False
        if self.closing:
            return
        parser = self.parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            # HTTP/2.0 or 3.0 on a request line is not HTTP/1.x framing to forward
            self.reject = (505, f"HTTP/{version} is not supported; use HTTP/1.1")
            raise _Reject
        upgrading = parser.should_upgrade()
        # after an Upgrade request the connection is a tunnel or it is closed
        exchange = self.router.open_exchange(
            self, parser.get_method(), self.url, self.headers,
            version == "1.1", parser.should_keep_alive() and not upgrading,
            upgrading, self.begin_at)
        self.headers = []
        self.parsing = exchange
        req = exchange.req
        self.body_expected = req.content_length if req is not None and not upgrading else 0
        self.body_seen = 0
        self._queue(exchange)

    def _queue(self, exchange) -> None:
        queue = self.queue
        queue.append(exchange)
        if len(queue) == 1:
            exchange.start()
        else:
            self._pause(_PAUSE_PIPELINE)

    def on_body(self, body):
        self.body_seen += len(body)
        exchange = self.parsing
        if exchange is not None:
            exchange.request_body(body)

    def on_message_complete(self):
        self.body_expected = 0
        exchange, self.parsing = self.parsing, None
        if exchange is not None:
            exchange.request_complete()

    # -- called by exchanges -----------------------------------------------

    def exchange_done(self, exchange, keep_alive: bool, now: float) -> None:
        queue = self.queue
        if queue and queue[0] is exchange:
            queue.popleft()
        self.idle_since = now
        if self.paused:
            self._resume(_PAUSE_UPSTREAM)
        if self.closing:
            return
        if not keep_alive or self.upgrade_buf is not None:
            self.close()
            return
        if queue:
            if len(queue) == 1:
                self._resume(_PAUSE_PIPELINE)
            queue[0].start()
        elif self.pending_error is not None:
            status, detail = self.pending_error
            self._reject(status, detail)
        elif self.paused:
            self._resume(_PAUSE_PIPELINE)

    def start_tunnel(self, exchange, upstream, rest: bytes) -> None:
        """The upstream accepted an Upgrade: from now on bytes pass through raw."""
        queue = self.queue
        if queue and queue[0] is exchange:
            queue.popleft()
        self.tunnel = upstream
        buffered, self.upgrade_buf = self.upgrade_buf or [], None
        if rest:
            self.transport.write(rest)
        for data in buffered:
            if data:
                upstream.transport.write(data)
        if self.write_paused:
            upstream.pause_reading()
        self._resume(_PAUSE_UPGRADE | _PAUSE_PIPELINE)

    def upstream_write_paused(self) -> None:
        self._pause(_PAUSE_UPSTREAM)

    def upstream_write_resumed(self) -> None:
        self._resume(_PAUSE_UPSTREAM)

    def pause_reading_for_buffer(self) -> None:
        self._pause(_PAUSE_BUFFER)

    def resume_reading_for_buffer(self) -> None:
        self._resume(_PAUSE_BUFFER)

    # -- flow control ------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self.paused and not self.closing:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closing:
                self.transport.resume_reading()

    def pause_writing(self):
        self.write_paused = True
        upstream = self._upstream()
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        upstream = self._upstream()
        if upstream is not None:
            upstream.resume_reading()

    def _upstream(self):
        if self.tunnel is not None:
            return self.tunnel
        if self.queue:
            return self.queue[0].upstream
        return None

    # -- ending ------------------------------------------------------------

    def _reject(self, status: int, detail: str) -> None:
        """Answer a request that must not be forwarded, then close."""
        self.in_head = False
        self.reject = None
        if self.closing:
            return
        broken, self.parsing = self.parsing, None
        if broken is not None:
            # the request whose body was arriving is answered with the error, in order
            self.closing_parser()
            broken.request_broken(status, detail)
            return
        if self.queue:
            # earlier pipelined requests are answered first, in order
            self.pending_error = (status, detail)
            self._pause(_PAUSE_PIPELINE)
            self.closing_parser()
            return
        self.router.rejected(self, status, detail)
        self.transport.write(pages.render(status, keep_alive=False, detail=""))
        self.close()

    def closing_parser(self) -> None:
        self.parser = _DeadParser()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()

    def check(self, now: float) -> None:
        """Called about once a second: enforce the header, idle and body timeouts."""
        if self.tunnel is not None or self.closing:
            return
        if self.activity != self.seen_activity:
            self.seen_activity = self.activity
            self.progress_at = now
        if self.queue:
            self._check_body_rate(now)
            if self.queue:
                self.queue[0].check_timeout(now, self.progress_at)
        elif self.in_head or self.fresh:
            if now - self.begin_at >= self.settings.header_timeout:
                self._reject(408, "request head not received in time")
        elif now - self.idle_since >= self.settings.keepalive_timeout:
            self.close()


    def _check_body_rate(self, now: float) -> None:
        """Cut a request body that trickles in below the minimum rate.

        Each window of `body_rate_grace` seconds must bring at least
        `min_body_rate` bytes per second; a window in which we stopped
        reading (backpressure from the instance) does not count.
        """
        exchange = self.parsing
        if exchange is None or exchange is not self.queue[0] or self.paused:
            self.body_since = 0.0
            return
        if not self.body_since:
            self.body_since, self.body_mark = now, self.activity
            return
        elapsed = now - self.body_since
        if elapsed < self.settings.body_rate_grace:
            return
        if self.activity - self.body_mark < self.settings.min_body_rate * elapsed:
            exchange.respond_error(408, log="request body below the minimum rate")
            return
        self.body_since, self.body_mark = now, self.activity


class _DeadParser:
    """Stands in for the parser after a fatal error: input is ignored."""

    def feed_data(self, data):
        pass


class TLSClientConnection(ClientConnection):
    """HTTP/1.1 over TLS: the transport decrypts, everything else is the same
    (keep-alive, pipelining, streaming, upgrades)."""

    __slots__ = ()
    secure = True
    proto = b"https"
