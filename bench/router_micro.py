"""The router's Python work per proxied request, without sockets.

The real Router, ClientConnection, UpstreamConnection and Exchange objects
proxy a small keep-alive request and its response through transports that
only count writes, so what is measured is the interpreter's share of a
request (the kernel's share, the same for nginx, is left out). Never used by
the test suite.

Run:  python bench/router_micro.py [--access-log] [--tls] [--requests N] [--rounds R]
      (--tls: the connection class HTTPS uses, on a route with HSTS; what the
      TLS layer itself costs is uvloop's and OpenSSL's, left out here)
      (prints the best of R rounds of N requests, in us per request)

Instructions instead of seconds (repeatable on a busy machine): run it twice
under callgrind with --once and two request counts; the difference of the
two totals over the difference of the counts is the cost of one request:

  valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
      python bench/router_micro.py --once --requests 2000      # then 12000
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dotcloud import logs  # noqa: E402
from dotcloud.datadir import DataDir  # noqa: E402
from router.accesslog import AccessLog  # noqa: E402
from router.proxy import ClientConnection, TLSClientConnection  # noqa: E402
from router.router import Router  # noqa: E402
from router.settings import Settings  # noqa: E402
from router.upstream import UpstreamConnection  # noqa: E402

HOST = "bench.localhost"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench.localhost\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 21:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 25\r\nConnection: keep-alive\r\n\r\n"
            b"Hello from the upstream.\n")


class Transport:
    """Accepts writes and forgets them."""

    def __init__(self):
        self.closing = False

    def write(self, data):
        pass

    def writelines(self, parts):
        pass

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


class Loop:
    def create_task(self, coro):
        coro.close()
        raise RuntimeError("the harness keeps one pooled upstream connection: nothing connects")

    def call_later(self, delay, callback):
        pass


def proxy_one_setup(access_log: bool, tls: bool = False):
    """A router with one route, one client connection and one pooled upstream
    connection; returns a function that proxies one request through them."""
    paths = DataDir(tempfile.mkdtemp(prefix="router-micro-"))
    paths.run.mkdir()
    paths.routes.write_text(json.dumps({"version": 1, "routes": {HOST: {
        "app": "bench", "service": "www",
        "backends": [{"id": "bench.www.0", "host": "127.0.0.1", "port": 9}],
        **({"hsts": True} if tls else {})}}}))
    logs.configure(stream=io.StringIO())
    settings = Settings.from_env({"DOTCLOUD_ROUTER_ACCESS_LOG": "1" if access_log else "0"})
    router = Router(settings, paths, Loop(), logs.get("router"))
    router.load()
    if router.access_log is not None:
        router.access_log = AccessLog(stream=open(os.devnull, "w"))   # lines written, to nowhere
    client = (TLSClientConnection if tls else ClientConnection)(router)
    client.connection_made(Transport())
    target = router.targets.get(router.table.routes[HOST].backends[0])
    upstream = UpstreamConnection(target)
    upstream.connection_made(Transport())
    upstream.idle_since = time.monotonic()
    target.idle.append(upstream)

    def one():
        # new bytes objects each time (their hash not yet known), as the loop hands them over
        client.data_received(memoryview(REQUEST).tobytes())
        upstream.data_received(memoryview(RESPONSE).tobytes())
    return one, router


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--access-log", action="store_true")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--once", action="store_true", help="run --requests once, print nothing")
    args = ap.parse_args()
    one, router = proxy_one_setup(args.access_log, args.tls)
    for _ in range(1000):
        one()
    if args.once:
        for _ in range(args.requests):
            one()
        router.metrics.fold()
        router.flush_log()
        return 0
    gc.freeze()
    best = float("inf")
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.requests):
            one()
        router.metrics.fold()
        router.flush_log()
        best = min(best, time.process_time() - start)
    print(f"{best / args.requests * 1e6:.2f} us per request (Python {sys.version.split()[0]}, "
          f"{Path(sys.executable).resolve()}; access log {'on' if args.access_log else 'off'}; "
          f"{'TLS connection class, HSTS route; ' if args.tls else ''}"
          f"best of {args.rounds} x {args.requests})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
