"""One request and its response as they pass through the router.

An Exchange is created when a request's head has arrived and been routed.
It picks up an upstream connection (pooled or new), streams the request
body up and the response back with backpressure, retries another instance
when that is safe, answers with an error page when nothing else can, and
reports itself for the access log and metrics. It never reads the route
table (it keeps the route it was given) and never touches another request.
"""
from __future__ import annotations

import asyncio
from time import monotonic

import httptools

from . import headers, pages
from .upstream import UpstreamConnection

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
PENDING_LIMIT = 256 * 1024     # request body buffered while connecting
MAX_RESPONSE_HEAD = 64 * 1024
SAFE_REUSE_AGE = 1.0           # seconds idle a pooled connection may be for a non-retryable request


class _BadHead(Exception):
    """The upstream's head does not end with CRLF CRLF where the parser says it ends."""
CLIENT_GONE = 499


class Exchange:
    # Slots, all set here: attribute access stays cheap and no per-request
    # dictionary is built (an Exchange lives for exactly one request).
    __slots__ = (
        "client", "router", "method", "url", "req", "head", "keep_alive", "client_keep", "http11",
        "begin", "route", "target", "counted", "error", "detail", "out", "tried",
        "attempts", "upstream", "reused", "rparser", "connecting", "pending",
        "pending_size", "req_done", "body_sent", "head_sent", "sent_at", "status", "rraw",
        "rpos", "interim", "mode", "resp_started", "resp_done", "bytes_out", "finished",
        "up_keep", "until_close", "body_expected", "body_seen", "body_left", "heads")

    def __init__(self, client, method: bytes, url: bytes, req, keep_alive: bool,
                 http11: bool, begin: float, route=None, target=None, error: int = 0,
                 detail: str = ""):
        self.client = client
        self.router = router = client.router
        # HSTS hosts over TLS get heads with the header added (a memo of their own)
        self.heads = (router.hsts_heads if client.secure and route is not None and route.hsts
                      else router.response_heads)
        self.method = method
        self.url = url
        self.req = req                  # headers.RequestHead, or None when rejected
        # what is sent upstream: req.head, or a repeat's own (router.open_known)
        self.head = req.head if req is not None else None
        self.keep_alive = keep_alive
        self.client_keep = keep_alive
        self.http11 = http11
        self.begin = begin
        self.route = route
        self.target = target
        self.counted = target is not None
        self.error = error
        self.detail = detail
        self.out = []
        self.tried = None
        self.attempts = 0
        self.upstream = None
        self.reused = False
        self.rparser = None
        self.connecting = None
        self.pending = None
        self.pending_size = 0
        self.req_done = False
        self.body_sent = 0
        self.head_sent = False
        self.sent_at = 0.0
        self.status = 0
        self.rraw = None
        self.rpos = 0
        self.interim = False
        self.mode = headers.NO_BODY
        self.resp_started = False
        self.resp_done = False
        self.bytes_out = 0
        self.finished = False
        self.up_keep = False
        self.until_close = False
        self.body_expected = 0          # Content-Length of the response
        self.body_seen = 0              # of it, passed through the parser
        self.body_left = 0              # still to come, passed on without the parser

    # -- request side (called by the ClientConnection) ---------------------

    def start(self) -> None:
        """This exchange is now first in its connection's queue: go."""
        if self.error:
            self.respond_error(self.error, self.detail)
        else:
            self._acquire()

    def start_whole(self, now: float) -> None:
        """start() and request_complete() for a request without a body, with
        the common case (a fresh pooled connection) inline."""
        if self.error:
            self.start()
            self.request_complete()
            return
        idle = self.target.idle
        if idle:
            conn = idle[-1]
            max_age = self.client.settings.pool_idle_timeout
            if self.method not in IDEMPOTENT:
                max_age = min(max_age, SAFE_REUSE_AGE)
            if (not conn.closed and now - conn.idle_since < max_age
                    and not conn.transport.is_closing()):
                idle.pop()
                self.attempts = 1
                self.upstream = conn
                self.reused = True
                self.req_done = True
                self.head_sent = True
                self.sent_at = now
                conn.exchange = self
                conn.transport.write(self.head)
                if self.client.write_paused:
                    conn.pause_reading()
                if conn.write_paused:
                    self.client.upstream_write_paused()
                return
        self._acquire()
        self.request_complete()

    def request_body(self, data: bytes) -> None:
        if self.finished or self.error:
            return
        if self.req.chunked:
            self._send((b"%x\r\n" % len(data), data, b"\r\n"), len(data))
        else:
            self._send((data,), len(data))

    def request_complete(self) -> None:
        self.req_done = True
        if self.finished or self.error:
            return
        if self.req.chunked:
            self._send((b"0\r\n\r\n",), 0)
        if self.upstream is not None:
            self.sent_at = monotonic()

    def request_broken(self, status: int, detail: str) -> None:
        """The rest of the request is malformed: answer with an error, then close."""
        self.keep_alive = False
        self.client_keep = False
        if self.finished:
            return
        self.error = status
        self.detail = detail
        if self.client.queue and self.client.queue[0] is self:
            self.respond_error(status, log=detail)

    def _send(self, parts, size: int) -> None:
        up = self.upstream
        if up is not None:
            up.transport.writelines(parts) if len(parts) > 1 else up.transport.write(parts[0])
            self.body_sent += size
            return
        if self.pending is None:
            self.pending = []
        self.pending += parts
        self.pending_size += size
        if self.pending_size > PENDING_LIMIT:
            self.client.pause_reading_for_buffer()

    # -- choosing and reaching an instance ---------------------------------

    def _acquire(self, pooled: bool = True) -> None:
        self.attempts += 1
        target = self.target
        if not pooled:
            self.connecting = self.client.loop.create_task(self._connect(target))
            return
        max_age = self.client.settings.pool_idle_timeout
        if self.method not in IDEMPOTENT or self.req.has_body:
            # what cannot be retried avoids connections the app may be closing for
            # idleness right now (gunicorn's keep-alive is 2 s, node's 5 s)
            max_age = min(max_age, SAFE_REUSE_AGE)
        conn = target.take_idle(monotonic(), max_age)
        if conn is not None:
            self._attach(conn, reused=True)
        else:
            self.connecting = self.client.loop.create_task(self._connect(target))

    async def _connect(self, target) -> None:
        try:
            await self._connect_to(target)
        except Exception:
            # never leave a client waiting on a request nobody handles any more
            self.router.log.exception("router_bug", where="connect")
            self.connecting = None
            self.respond_error(502)

    async def _connect_to(self, target) -> None:
        loop = self.client.loop
        reason = "refused"
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(target),
                                       target.host, target.port),
                self.client.settings.connect_timeout)
        except asyncio.TimeoutError:
            reason = "timeout"
        except OSError:
            pass
        else:
            self.connecting = None
            if self.finished:
                conn.close()
                return
            if not conn.usable():
                # reset as soon as it was accepted (an instance going away with
                # connections in its backlog): nothing was sent, so like a refusal
                conn.close()
                reason = "reset_on_accept"
            else:
                target.mark_up()
                self._attach(conn, reused=False)
                return
        self.connecting = None
        if not self.finished:
            self.router.upstream_failed(target, reason)
            target.mark_down(monotonic(), self.client.settings.down_seconds)
            self._try_next(504 if reason == "timeout" else 502)

    def _try_next(self, status: int) -> None:
        tried = self.tried
        if tried is None:
            tried = self.tried = set()
        tried.add(self.target.key)
        nxt = None
        if self.attempts <= len(self.route.backends):
            nxt = self.router.targets.pick(self.route, tried)
        if nxt is None:
            self.respond_error(status)
            return
        self.target.in_flight -= 1
        nxt.in_flight += 1
        self.target = nxt
        self._acquire()

    def _attach(self, conn: UpstreamConnection, reused: bool) -> None:
        self.upstream = conn
        self.reused = reused
        conn.exchange = self
        transport = conn.transport
        if self.pending:
            transport.writelines([self.head] + self.pending)
            self.body_sent += self.pending_size
            self.pending = None
            self.pending_size = 0
            self.client.resume_reading_for_buffer()
        else:
            transport.write(self.head)
        self.head_sent = True
        if self.req_done:
            self.sent_at = monotonic()
        if self.client.write_paused:
            conn.pause_reading()
        if conn.write_paused:
            self.client.upstream_write_paused()

    # -- response side (httptools callbacks, then upstream_data) -----------

    def on_headers_complete(self) -> None:
        status = self.rparser.get_status_code()
        raw = self.rraw
        start = self.rpos
        end = raw.find(b"\r\n\r\n", start)
        if end < 0:
            raise _BadHead
        end += 4
        self.rpos = end
        raw = raw[start:end] if start or end < len(raw) else raw
        if status < 200 and status != 101:
            if self.http11:
                self.out.append(headers.interim_head(raw))
            self.interim = True
            return
        self.status = status
        self.up_keep = self.rparser.should_keep_alive()
        head = self.heads(status, raw, self.method == b"HEAD",
                                          self.http11, self.keep_alive, self.up_keep)
        self.mode = head.mode
        self.body_expected = head.content_length
        self.until_close = head.until_close
        self.client_keep = head.keep_alive
        self.out.append(head.head)
        self.resp_started = True
        self.rraw = None
        if self.method == b"HEAD":
            self.resp_done = True

    def on_body(self, body: bytes) -> None:
        if self.resp_done:
            return
        if self.mode == headers.CHUNKED:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.body_seen += len(body)
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.status == 101 or self.resp_done:
            return
        if self.mode == headers.CHUNKED:
            self.out.append(b"0\r\n\r\n")
        self.resp_done = True

    def upstream_data(self, data: bytes) -> None:
        self.client.activity += 1
        left = self.body_left
        if left:
            # the rest of a Content-Length body: counted and passed on as it came,
            # without a copy through the parser
            size = len(data)
            if size < left:
                self.body_left = left - size
                self.bytes_out += size
                self.client.transport.write(data)
                return
            if size > left:
                data = data[:left]
                self.up_keep = False     # bytes beyond the response: never reuse this one
            self.body_left = 0
            self.bytes_out += left
            self.client.transport.write(data)
            self.resp_done = True
            self._finish(reusable=True)
            return
        parser = self.rparser
        if parser is None:
            whole = self.heads.whole.get(
                (data, self.method == b"HEAD", self.http11, self.keep_alive))
            if whole is not None:
                # this exact response (head and whole body) was forwarded before
                out, self.status, up_keep, self.client_keep = whole
                self.resp_started = self.resp_done = True
                self.bytes_out += len(out)
                client = self.client
                client.transport.write(out)
                self._end(up_keep, client)
                return
            if self._known_response(data):
                return
            parser = self.rparser = httptools.HttpResponseParser(self)
        if not self.resp_started:
            # keep the raw head until it is complete: it is forwarded as it came
            raw = self.rraw
            if raw:
                if len(raw) > MAX_RESPONSE_HEAD:
                    self._upstream_broken("response head too large")
                    return
                self.rraw = raw + data
            else:
                self.rraw = data
                self.rpos = 0
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._tunnel(data[exc.args[0]:])
            return
        except httptools.HttpParserError as exc:
            self._upstream_broken(f"invalid response: {exc}")
            return
        if self.out:
            self._flush()
        if self.resp_done:
            self._finish(reusable=True)
        elif self.mode == headers.LENGTH and self.resp_started:
            self.body_left = self.body_expected - self.body_seen

    def _known_response(self, data: bytes) -> bool:
        """The fast path: a response whose head arrived whole, is byte for byte one
        the parser accepted before, and frames its body with Content-Length, is
        forwarded head and body in one write without parsing it again."""
        end = data.find(b"\r\n\r\n") + 4
        if end < 4:
            return False
        size = len(data)
        known = self.heads.known(data[:end] if end < size else data,
                                                 self.method == b"HEAD", self.http11,
                                                 self.keep_alive)
        if known is None:
            return False
        head, status, up_keep = known
        if head.mode != headers.LENGTH:
            return False
        length = head.content_length
        body = size - end
        if body > length:
            return False        # more than this response: the parser decides
        self.status = status
        self.up_keep = up_keep
        self.mode = headers.LENGTH
        self.body_expected = length
        self.client_keep = head.keep_alive
        self.resp_started = True
        out = head.head + data[end:] if body else head.head
        self.bytes_out += len(out)
        self.client.transport.write(out)
        if body < length:
            self.body_left = length - body
            return True
        if size <= headers.WHOLE_RESPONSE_MAX:
            self.heads.remember_whole(
                data, self.method == b"HEAD", self.http11, self.keep_alive,
                (out, status, up_keep, head.keep_alive))
        self.resp_done = True
        self._finish(reusable=True)
        return True

    def _flush(self) -> None:
        out = self.out
        data = out[0] if len(out) == 1 else b"".join(out)
        self.out = []
        self.bytes_out += len(data)
        self.client.transport.write(data)

    def upstream_lost(self, conn: UpstreamConnection, exc) -> None:
        """The upstream connection closed while this exchange used it."""
        if self.finished or conn is not self.upstream:
            return
        self.upstream = None
        if self.resp_started:
            if self.until_close and exc is None and not self.resp_done:
                if self.mode == headers.CHUNKED:
                    self.out.append(b"0\r\n\r\n")
                if self.out:
                    self._flush()
                self._finish(reusable=False)
            else:
                self._abort_response("upstream closed mid-response")
            return
        self.out = []
        if self.reused:
            # the instance may be gone with all its pooled connections: the others
            # are as stale as this one, and trying them one by one would spend the
            # tries the route's other instances are owed
            self.target.close_idle()
        if not self._retryable():
            self.respond_error(502, "the instance closed the connection")
            return
        self._reset_attempt()
        if self.reused:
            # not counted: a fresh connection to the same instance decides
            self.attempts -= 1
            self._acquire(pooled=False)
        else:
            self.target.mark_down(monotonic(), self.client.settings.down_seconds)
            self.router.upstream_failed(self.target, "reset")
            self._try_next(502)

    def _retryable(self) -> bool:
        return (self.body_sent == 0 and not self.req.has_body
                and self.method in IDEMPOTENT and self.route is not None)

    def _reset_attempt(self) -> None:
        self.head_sent = False
        self.sent_at = 0.0
        self.rparser = None
        self.rraw = None
        self.interim = False

    def _upstream_broken(self, detail: str) -> None:
        up, self.upstream = self.upstream, None
        if up is not None:
            up.abort()
        if self.resp_started:
            self._abort_response(detail)
        else:
            self.out = []
            self.respond_error(502, "the application sent an invalid response", log=detail)

    def _tunnel(self, rest: bytes) -> None:
        up = self.upstream
        if self.status != 101 or self.req.upgrade is None or up is None:
            self._upstream_broken("unexpected protocol upgrade")
            return
        if self.out:
            self._flush()
        self.finished = True
        self.rparser = None
        self.upstream = None
        up.exchange = None
        up.peer = self.client
        self._release()
        self.target.tunnels += 1
        self.router.record(self)
        self.client.start_tunnel(self, up, rest)

    # -- ending ------------------------------------------------------------

    def _release(self) -> None:
        if self.counted:
            self.counted = False
            self.target.in_flight -= 1

    def _finish(self, reusable: bool) -> None:
        if self.finished:
            return
        self.rparser = None       # the parser holds our callbacks: break the cycle now
        self._end(reusable and not self.until_close and self.up_keep, self.client)

    def _end(self, up_keep: bool, client) -> None:
        """The upstream connection goes back to the pool if it may be reused; the
        request is recorded and the client connection goes on."""
        self.finished = True
        now = monotonic()
        up, self.upstream = self.upstream, None
        target = self.target
        if up is not None:
            up.exchange = None
            if up_keep and self.req_done and not up.closed:
                if up.read_paused:
                    up.resume_reading()
                idle = target.idle
                if len(idle) < client.settings.pool_max_idle:
                    up.idle_since = now
                    idle.append(up)
                else:
                    up.close()
            else:
                up.close()
        self._release()
        self.router.record(self, now)
        client.exchange_done(self, self.client_keep and self.req_done, now)

    def respond_error(self, status: int, detail: str = "", log: str = "") -> None:
        """Answer with our own page; only possible before any response byte."""
        if self.finished:
            return
        if self.resp_started:
            self._abort_response(detail or log)
            return
        self._drop_upstream()
        self.status = status
        self.detail = log or detail
        body_pending = self.req is None or (self.req.has_body and not self.req_done)
        self.client_keep = (self.keep_alive and not body_pending and status not in (400, 408)
                            and not self.client.closing)
        if status == 308:
            if self.client_keep:
                self.req_done = True        # no body to wait for: the connection goes on
            self.out.append(pages.redirect(detail, self.client_keep))
        else:
            self.out.append(pages.render(status, self.client_keep, detail))
        self._flush()
        self._finish(reusable=False)

    def _drop_upstream(self) -> None:
        """Stop connecting, and cut the upstream connection: its state is unknown."""
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        up, self.upstream = self.upstream, None
        if up is not None:
            up.abort()

    def _abort_response(self, detail: str) -> None:
        """The response cannot complete: cut the client connection so it sees that."""
        self.detail = detail
        self.client_keep = False
        if self.out:
            self._flush()
        self._finish(reusable=False)

    def abort(self) -> None:
        """The client went away: free everything, answer nobody."""
        if self.finished:
            return
        self.finished = True
        self.rparser = None
        self._drop_upstream()
        if not self.resp_done:
            self.detail = self.detail or "client closed the connection"
            self.status = self.status or CLIENT_GONE
        self._release()
        self.router.record(self)

    def check_timeout(self, now: float, progress_at: float) -> None:
        """Called about once a second by the router's clock for active exchanges."""
        if self.finished or self.error:
            return
        settings = self.client.settings
        if not self.resp_started and self.sent_at:
            if now - self.sent_at >= settings.first_byte_timeout:
                self.router.upstream_failed(self.target, "first_byte_timeout")
                self.respond_error(504)
        elif now - progress_at >= settings.idle_timeout and self.connecting is None:
            if self.resp_started:
                self._abort_response("idle timeout")
            else:
                self.respond_error(504 if self.req_done else 408, log="idle timeout")
