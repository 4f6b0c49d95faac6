"""Request heads into the router: the real Router and ClientConnection, in process.

Each case is a fresh client connection of one router with one route and an
idle pooled upstream connection; both transports record what they are sent.
Whatever the client sends: no exception, no `router_bug`, the client gets
nothing or HTTP/1.1 responses, and what reaches the upstream parses as
HTTP/1.1 framing.
"""
import io
import json
import tempfile
import time
from pathlib import Path

import httptools
from hypothesis import event, given
from hypothesis import strategies as st

from dotcloud import logs
from dotcloud.datadir import DataDir
from router.proxy import ClientConnection
from router.router import Router
from router.settings import Settings
from router.upstream import UpstreamConnection

HOST = b"fuzz.localhost"


class Transport:
    def __init__(self):
        self.sent = bytearray()
        self.closing = False

    def write(self, data):
        self.sent += data

    def writelines(self, parts):
        for part in parts:
            self.sent += part

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def is_closing(self):
        return self.closing

    def get_extra_info(self, name):
        return ("127.0.0.1", 40000) if name == "peername" else None

    def close(self):
        self.closing = True

    def abort(self):
        self.closing = True


class Task:
    def cancel(self):
        pass

    def add_done_callback(self, callback):
        pass


class Loop:
    def create_task(self, coro):
        coro.close()            # a new upstream connection is never made here
        return Task()

    def call_later(self, delay, callback):
        pass


LOG = io.StringIO()
logs.configure(stream=LOG)
_data = Path(tempfile.mkdtemp(prefix="fuzz-router-"))
_paths = DataDir(_data)
_paths.run.mkdir()
_paths.routes.write_text(json.dumps({"version": 1, "routes": {HOST.decode(): {
    "app": "fuzz", "service": "www",
    "backends": [{"id": "fuzz.www.0", "host": "127.0.0.1", "port": 9}]}}}))
ROUTER = Router(Settings.from_env({"DOTCLOUD_ROUTER_ACCESS_LOG": "0"}), _paths,
                Loop(), logs.get("router"))
ROUTER.load()


class Sink:
    def on_message_complete(self):
        pass


def check_upstream_framing(sent: bytes) -> None:
    parser = httptools.HttpRequestParser(Sink())
    try:
        parser.feed_data(sent)  # partial is fine; malformed raises and fails the case
    except httptools.HttpParserUpgrade:
        pass                    # an Upgrade request: what follows is the tunnel's


METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"CONNECT", b"PATCH",
           b"get", b"G\x00T", b""]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"HTTP/1", b"http/1.1",
            b""]
HEADERS = [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Upgrade",
           b"Expect", b"X-Forwarded-For", b"X-Request-Id", b"Te", b"Host ", b" Host"]
VALUES = [HOST, b"chunked", b"gzip, chunked", b"5", b"-1", b"0x10", b"5, 5", b"close",
          b"keep-alive", b"websocket", b"100-continue", b"1.2.3.4", HOST + b":80", b"a\rb"]
EOL = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n\r\n"])
target = st.one_of(st.sampled_from([b"/", b"/x?y", b"*", b"http://fuzz.localhost/a",
                                    b"http://other/a", b"//x", b"/%00"]), st.binary(max_size=20))
header = st.tuples(st.one_of(st.sampled_from(HEADERS), st.binary(max_size=10)), st.just(b":"),
                   st.sampled_from([b" ", b"", b"\t"]),
                   st.one_of(st.sampled_from(VALUES), st.binary(max_size=16)), EOL).map(b"".join)
request = st.tuples(st.sampled_from(METHODS), st.just(b" "), target, st.just(b" "),
                    st.sampled_from(VERSIONS), EOL, st.lists(header, max_size=6).map(b"".join),
                    EOL, st.binary(max_size=40)).map(b"".join)
# Mostly well-formed: a Host the router serves, CRLFs, one odd part at most.
fair_header = st.tuples(st.sampled_from(HEADERS[1:9]), st.just(b": "),
                        st.sampled_from(VALUES), st.just(b"\r\n")).map(b"".join)
fair = st.tuples(st.sampled_from(METHODS[:8]), st.just(b" "),
                 st.sampled_from([b"/", b"/a?b=c", b"http://fuzz.localhost/x"]),
                 st.just(b" "), st.sampled_from(VERSIONS[:2]),
                 st.just(b"\r\nHost: fuzz.localhost\r\n"),
                 st.lists(st.one_of(fair_header, header), max_size=4).map(b"".join),
                 st.just(b"\r\n"), st.binary(max_size=40)).map(b"".join)
stream = st.one_of(st.binary(max_size=300), st.lists(request, min_size=1, max_size=3).map(b"".join),
                   st.lists(fair, min_size=1, max_size=3).map(b"".join))


@given(stream, st.integers(min_value=1, max_value=64))
def test_any_request_head_is_forwarded_cleanly_or_refused(data, chunk):
    upstream_transport = Transport()
    target_ = ROUTER.targets.get(ROUTER.table.routes[HOST.decode()].backends[0])
    target_.idle.clear()
    upstream = UpstreamConnection(target_)
    upstream.connection_made(upstream_transport)
    upstream.idle_since = time.monotonic()
    target_.idle.append(upstream)
    client_transport = Transport()
    client = ClientConnection(ROUTER)
    client.connection_made(client_transport)
    mark = LOG.tell()
    for i in range(0, len(data), chunk):
        client.data_received(data[i:i + chunk])
        if client.closing:
            break
    client.connection_lost(None)
    LOG.seek(mark)
    assert "router_bug" not in LOG.read()
    LOG.seek(0, io.SEEK_END)
    sent = bytes(client_transport.sent)
    assert not sent or sent.startswith(b"HTTP/1.1 "), sent[:80]
    check_upstream_framing(bytes(upstream_transport.sent))
    event("forwarded" if upstream_transport.sent else
          f"answered {sent[9:12].decode(errors='replace')}" if sent else "no answer yet")
    ROUTER.connections.discard(client)
