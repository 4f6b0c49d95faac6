"""ACME HTTP-01 answers: GET /.well-known/acme-challenge/TOKEN, any Host.

The certificate daemon (dotcloud/certificates.py) writes each key
authorization to DATA/acme/challenges/TOKEN while its order is open; the
router answers with that file, as text/plain, before any routing or
redirect, so names not routed yet and names redirected to HTTPS validate
too. A token with no file falls through to the app (it may run its own
ACME client).
"""
from __future__ import annotations

import re
from pathlib import Path

from .exchange import Exchange

PREFIX = b"/.well-known/acme-challenge/"
TOKEN = re.compile(rb"[A-Za-z0-9_-]{1,256}")
MAX_ANSWER = 4096


class Challenges:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def answer(self, url: bytes) -> bytes | None:
        """The key authorization for this challenge URL, or None."""
        token = url[len(PREFIX):].partition(b"?")[0]
        if not TOKEN.fullmatch(token):
            return None
        try:
            # a small local file: reading it inline is cheaper than a thread hop
            with open(self.directory / token.decode(), "rb") as f:
                return f.read(MAX_ANSWER)
        except OSError:
            return None

    def exchange(self, client, method: bytes, url: bytes, keep_alive: bool, http11: bool,
                 begin: float) -> Exchange | None:
        if method != b"GET" and method != b"HEAD":
            return None
        body = self.answer(url)
        if body is None:
            return None
        return ChallengeExchange(client, method, url, None, keep_alive, http11, begin,
                                 error=200, detail=body.decode("ascii", "replace"))


class ChallengeExchange(Exchange):
    """An exchange the router answers itself with a key authorization."""
    __slots__ = ()

    def respond_error(self, status: int, detail: str = "", log: str = "") -> None:
        if status != 200 or self.finished:
            super().respond_error(status, detail, log)
            return
        self.status = 200
        # the request's framing was not looked at (no body is expected): close
        # after the answer rather than guess where the next request starts
        self.client_keep = False
        self.out.append(response(detail.encode(), self.client_keep, self.method == b"HEAD"))
        self.detail = "acme challenge"
        self._flush()
        self._finish(reusable=False)


def response(body: bytes, keep_alive: bool, head_only: bool = False) -> bytes:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\nCache-Control: no-store\r\n" % len(body)
            + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")
    return head if head_only else head + body
