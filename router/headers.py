"""Rewriting of request and response heads as they cross the router.

Pure functions over the header lists httptools gives us (bytes name, bytes
value). They remove hop-by-hop headers, set the X-Forwarded-* and
X-Request-Id headers, and choose how a body is framed on the other side.
They never look at bodies and never parse what is only forwarded (the URL
and ordinary headers pass through as the bytes they arrived as).
"""
from __future__ import annotations

import itertools
import os
import re
from typing import NamedTuple

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
_REQUEST_SPECIAL = HOP_BY_HOP | {
    b"host", b"content-length", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"x-request-id"}
_STANDARD_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})
_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:@+=/-]{1,200}")

# Response body framing toward the client.
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = 0, 1, 2, 3
# Responses up to this size (head and body) are remembered whole: an app
# answering the same bytes again is forwarded with one lookup.
WHOLE_RESPONSE_MAX = 4096


class BadRequest(Exception):
    """The request must not be forwarded; args[0] is the status to answer."""


class RequestHead(NamedTuple):
    head: bytes           # request line and headers to send upstream
    host: bytes           # the Host header as received
    request_id: bytes
    chunked: bool         # body arrives (and leaves) chunked
    has_body: bool
    upgrade: bytes | None  # Upgrade header value when the client asked for one
    content_length: int    # of a body framed by Content-Length, else 0
    own_id: bool = False   # request_id is ours (none valid was given): new for each request


class ResponseHead(NamedTuple):
    head: bytes
    mode: int             # NO_BODY, LENGTH, CHUNKED or UNTIL_CLOSE
    keep_alive: bool      # the client connection stays open after this response
    until_close: bool     # the upstream body ends when the upstream closes
    content_length: int = 0   # when mode is LENGTH


class RequestIds:
    """Unique request ids without a syscall each: a random prefix and a counter."""

    def __init__(self):
        self.prefix = os.urandom(8).hex().encode()
        self._count = itertools.count(1)

    def __call__(self) -> bytes:
        return b"%s%x" % (self.prefix, next(self._count))

    def base(self, req: "RequestHead") -> bytes | None:
        """For a head whose id is ours: the head up to the counter part of a new
        id, which renew() completes (None when the client gave the id)."""
        if not req.own_id:
            return None
        # the id line is the head's last when there is no body and no upgrade
        return req.head[:-len(req.request_id) - 4] + self.prefix

    def renew(self, base: bytes) -> bytes:
        """The head for a repeat of a request, under an id of its own (only the
        bytes: the rest of its RequestHead is the remembered one's)."""
        return base + b"%x\r\n\r\n" % next(self._count)

    @staticmethod
    def id_in(head: bytes) -> bytes:
        """The id of a head made by renew(): the value of its last line."""
        return head[head.rindex(b"\r\n", 0, -4) + len(b"\r\nX-Request-Id: "):-4]


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade", b"keep-alive, upgrade",
                               b"upgrade, keep-alive", b"keep-alive,upgrade"})


def _extra_tokens(value: bytes) -> set:
    """Header names a Connection header lists besides close/keep-alive/upgrade."""
    value = value.lower()
    if value in _PLAIN_CONNECTION:
        return set()
    return {t.strip() for t in value.split(b",") if t.strip()} - _STANDARD_TOKENS


def rewrite_request(method: bytes, target: bytes, headers: list, client_ip: bytes,
                    trusted: frozenset, upgrading: bool, new_id,
                    proto: bytes = b"http") -> RequestHead:
    """Build the head sent upstream; raise BadRequest for what must not pass."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    host = xff = xfp = xfh = rid = upgrade = length = None
    chunked = has_body = False
    drop = None
    for name, value in headers:
        low = name.lower()
        if low not in _REQUEST_SPECIAL:
            parts += (name, b": ", value, b"\r\n")
        elif low == b"host":
            if host is not None:
                raise BadRequest(400, "more than one Host header")
            host = value
            parts += (name, b": ", value, b"\r\n")
        elif low == b"content-length":
            has_body = value != b"0"
            length = value
            parts += (name, b": ", value, b"\r\n")
        elif low == b"transfer-encoding":
            if chunked or value.strip().lower() != b"chunked":
                raise BadRequest(400, "unsupported Transfer-Encoding")
            chunked = has_body = True
        elif low == b"connection":
            extra = _extra_tokens(value)
            if extra:
                drop = (drop or set()) | extra
        elif low == b"upgrade":
            upgrade = value
        elif low == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
        elif low == b"x-forwarded-proto":
            xfp = value
        elif low == b"x-forwarded-host":
            xfh = value
        elif low == b"x-request-id":
            rid = value
    if host is None:
        raise BadRequest(400, "missing Host header")
    if drop:
        parts = _without(parts, drop)
    trusting = client_ip in trusted
    if not trusting:
        xff = xfp = xfh = None
    parts += (b"X-Forwarded-For: ", client_ip if xff is None else xff + b", " + client_ip,
              b"\r\nX-Forwarded-Proto: ", xfp or proto,
              b"\r\nX-Forwarded-Host: ", xfh or host, b"\r\n")
    own_id = rid is None or not _REQUEST_ID_RE.fullmatch(rid)
    if own_id:
        rid = new_id()
    parts += (b"X-Request-Id: ", rid, b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if upgrading and upgrade is not None:
        parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    else:
        upgrade = None
    parts.append(b"\r\n")
    return RequestHead(b"".join(parts), host, rid, chunked, has_body, upgrade,
                       int(length) if length is not None and not chunked else 0, own_id)


def _without(parts: list, drop: set) -> list:
    """Remove headers named by the Connection header (parts is [line, n, ': ', v, crlf]*)."""
    kept = parts[:4]
    for i in range(4, len(parts), 4):
        if parts[i].lower() not in drop:
            kept += parts[i:i + 4]
    return kept


def _lines_re(names) -> "re.Pattern":
    """Matches whole header lines (with their leading CRLF) for these names."""
    alternatives = b"|".join(re.escape(n) for n in sorted(names))
    return re.compile(rb"\r\n(?:" + alternatives + rb"):[^\r]*", re.I)


_HOP_LINES_RE = _lines_re(HOP_BY_HOP)
_HOP_LINES_BUT_UPGRADE_RE = _lines_re(HOP_BY_HOP - {b"connection", b"upgrade"})
_CONNECTION_VALUES_RE = re.compile(rb"\r\nconnection:([^\r]*)", re.I)


class ResponseHeads:
    """rewrite_response remembered: an app's response heads repeat byte for byte
    (the Date header changes once a second), so most are a dictionary lookup.
    With each rewritten head it keeps what the parser said of the original
    (status, upstream keep-alive), so a head seen before can be forwarded
    without parsing it again (see known). Bounded: the memo is dropped whole
    when it fills up."""

    def __init__(self, size: int = 2048, extra: bytes = b""):
        self._size = size
        self._extra = extra       # header lines added to every rewritten head (HSTS)
        self._memo = {}
        # small responses seen whole (head and body) -> what the client gets
        self.whole = {}

    def remember_whole(self, raw: bytes, head_request: bool, client_http11: bool,
                       keep_alive: bool, forwarded: tuple) -> None:
        whole = self.whole
        if len(whole) >= self._size:
            whole.clear()
        whole[(raw, head_request, client_http11, keep_alive)] = forwarded

    def __call__(self, status: int, head: bytes, head_request: bool, client_http11: bool,
                 keep_alive: bool, upstream_keep: bool) -> ResponseHead:
        key = (head, head_request, client_http11, keep_alive)
        memo = self._memo
        found = memo.get(key)
        if found is None:
            if len(memo) >= self._size:
                memo.clear()
            rewritten = rewrite_response(
                status, head, head_request=head_request, client_http11=client_http11,
                keep_alive=keep_alive)
            if self._extra and status != 101:
                rewritten = rewritten._replace(head=rewritten.head[:-2] + self._extra + b"\r\n")
            found = memo[key] = (rewritten, status, upstream_keep)
        return found[0]

    def known(self, head: bytes, head_request: bool, client_http11: bool,
              keep_alive: bool):
        """(ResponseHead, status, upstream keep-alive) for a head the parser has
        accepted before, byte for byte, in the same circumstances; else None."""
        return self._memo.get((head, head_request, client_http11, keep_alive))


def rewrite_response(status: int, head: bytes, *, head_request: bool,
                     client_http11: bool, keep_alive: bool) -> ResponseHead:
    """Turn the upstream's raw head (status line to blank line) into the client's.

    The head is forwarded as the bytes it arrived as; only hop-by-hop lines
    are cut out and our framing lines added, so ordinary headers are never
    parsed here.
    """
    if status == 101:
        return ResponseHead(_http11(_HOP_LINES_BUT_UPGRADE_RE.sub(b"", head)), NO_BODY,
                            False, False)
    low = head.lower()
    upstream_chunked = b"\r\ntransfer-encoding:" in low
    has_length = b"\r\ncontent-length:" in low and not upstream_chunked
    drop = set()
    if b"\r\nconnection:" in low:
        for value in _CONNECTION_VALUES_RE.findall(head):
            drop |= _extra_tokens(value)
    head = _HOP_LINES_RE.sub(b"", head)
    if upstream_chunked or (status == 204 and b"\r\ncontent-length:" in low):
        drop.add(b"content-length")
        has_length = False
    if drop:
        head = _lines_re(drop).sub(b"", head)
    parts = [_http11(head)[:-2]]
    if head_request or status == 304 or status < 200 or status == 204:
        mode = NO_BODY
    elif has_length:
        mode = LENGTH
    elif client_http11:
        mode = CHUNKED
        parts.append(b"Transfer-Encoding: chunked\r\n")
    else:
        mode = UNTIL_CLOSE
        keep_alive = False
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    elif not client_http11:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    until_close = mode in (CHUNKED, UNTIL_CLOSE) and not upstream_chunked
    return ResponseHead(b"".join(parts), mode, keep_alive, until_close,
                        content_length(head) if mode == LENGTH else 0)


_CONTENT_LENGTH_VALUE_RE = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)


def content_length(head: bytes) -> int:
    """The Content-Length of a head the parser has already validated."""
    return int(_CONTENT_LENGTH_VALUE_RE.search(head).group(1))


def _http11(head: bytes) -> bytes:
    return head if head.startswith(b"HTTP/1.1 ") else b"HTTP/1.1 " + head[9:]


def interim_head(head: bytes) -> bytes:
    """A 1xx response relayed as it came, minus hop-by-hop headers."""
    return _http11(_HOP_LINES_RE.sub(b"", head))
