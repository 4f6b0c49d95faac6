"""The operator's HTTP endpoint on the admin port: /metrics, /status, /healthz.

Separate from the proxy port so apps can never be reached through it and it
can never be reached through an app's Host. It reads the router's state and
never changes it; one response per connection keeps it simple.
"""
from __future__ import annotations

import asyncio
import json

import httptools

from . import pages


class AdminConnection(asyncio.Protocol):
    def __init__(self, router, status):
        self.router = router
        self.status = status          # callable returning the status dict
        self.transport = None
        self.url = b""
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(pages.render(400))
            self.transport.close()

    def on_url(self, url):
        self.url += url

    def on_message_complete(self):
        path = self.url.split(b"?", 1)[0]
        if path == b"/metrics":
            gauges = {
                "dotcloud_router_connections": ("Open client connections.",
                                                len(self.router.connections)),
                "dotcloud_router_in_flight": ("Requests in flight to instances.",
                                              self.router.in_flight_total()),
                "dotcloud_router_routes_version": ("Version of the route table in use.",
                                                   self.router.table.version),
            }
            body = self.router.metrics.render(gauges)
            if self.router.certs is not None:
                body += _expiry_gauge(self.router.certs.seconds_left())
            self._reply(b"200 OK", b"text/plain; version=0.0.4", body)
        elif path == b"/status":
            self._reply(b"200 OK", b"application/json",
                        json.dumps(self.status()).encode() + b"\n")
        elif path == b"/healthz":
            self._reply(b"200 OK", b"text/plain", b"ok\n")
        else:
            self.transport.write(pages.render(404))
            self.transport.close()

    def _reply(self, status: bytes, content_type: bytes, body: bytes) -> None:
        self.transport.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (status, content_type, len(body), body))
        self.transport.close()


def _expiry_gauge(left: dict) -> bytes:
    lines = ["# HELP dotcloud_router_certificate_expiry_seconds Seconds until each "
             "certificate the router serves expires (negative: expired).",
             "# TYPE dotcloud_router_certificate_expiry_seconds gauge"]
    for name, seconds in left.items():
        label = name.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'dotcloud_router_certificate_expiry_seconds{{name="{label}"}} {seconds:.0f}')
    return ("\n".join(lines) + "\n").encode()
