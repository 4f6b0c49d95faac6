"""One connection from the router to an app instance (asyncio.Protocol).

It belongs to one Target's pool while idle and to exactly one Exchange while
busy; it hands every byte it receives to that Exchange, or raw to the client
once a WebSocket tunnel is established. It never parses, routes, or chooses
where its bytes go: an unsolicited byte on an idle connection closes it, so
a stray upstream response can never reach the next request.
"""
from __future__ import annotations

import asyncio


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("target", "transport", "exchange", "peer", "closed", "idle_since",
                 "write_paused",
                 "read_paused")

    def __init__(self, target):
        self.target = target
        self.transport = None
        self.exchange = None      # the Exchange using this connection, if any
        self.peer = None          # the ClientConnection once tunnelled
        self.closed = False
        self.idle_since = 0.0
        self.write_paused = False
        self.read_paused = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        peer = self.peer
        if peer is not None:
            if not peer.closing:
                peer.transport.write(data)
            return
        exchange = self.exchange
        if exchange is None:
            self.close()
            return
        exchange.upstream_data(data)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.closed = True
        self.target.forget(self)
        peer, self.peer = self.peer, None
        if peer is not None:
            self.target.tunnels -= 1
            peer.close()
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.upstream_lost(self, exc)

    def pause_writing(self):
        self.write_paused = True
        client = self._client()
        if client is not None:
            client.upstream_write_paused()

    def resume_writing(self):
        self.write_paused = False
        client = self._client()
        if client is not None:
            client.upstream_write_resumed()

    def _client(self):
        if self.peer is not None:
            return self.peer
        exchange = self.exchange
        return exchange.client if exchange is not None else None

    def pause_reading(self):
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self):
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def usable(self) -> bool:
        """Open and not closing: safe to write a request to."""
        return (not self.closed and self.transport is not None
                and not self.transport.is_closing())

    def close(self):
        self.closed = True
        self.exchange = None
        if self.transport is not None:
            self.transport.close()

    def abort(self):
        self.closed = True
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()
