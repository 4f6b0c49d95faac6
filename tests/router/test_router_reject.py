"""Malformed, ambiguous and slow requests are refused and never reach an upstream."""
import socket
import threading
import time

import pytest

from routerkit import read_response, routes, status_of

H = b"Host: hello.localhost\r\n"

REJECTED = {
    "content-length and transfer-encoding":
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "duplicate content-length":
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "conflicting content-length":
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "invalid content-length":
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5x\r\n\r\nhello",
    "negative content-length":
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "content-length list":
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello",
    "obs-fold":
        b"GET /echo HTTP/1.1\r\n" + H + b"X-Folded: a\r\n  b\r\n\r\n",
    "bare LF in head":
        b"GET /echo HTTP/1.1\nHost: hello.localhost\n\n",
    "bare LF after one header":
        b"GET /echo HTTP/1.1\r\n" + H + b"X-A: b\nX-C: d\r\n\r\n",
    "unknown transfer-encoding":
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "transfer-encoding chunked twice in two headers":
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding chunked twice":
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "space before colon":
        b"GET /echo HTTP/1.1\r\nHost : hello.localhost\r\n\r\n",
    "NUL in header value":
        b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "missing host":
        b"GET /echo HTTP/1.1\r\n\r\n",
    "two hosts":
        b"GET /echo HTTP/1.1\r\n" + H + b"Host: other.localhost\r\n\r\n",
    "invalid host":
        b"GET /echo HTTP/1.1\r\nHost: hello.localhost/../x\r\n\r\n",
    "absolute-form naming another host":
        b"GET http://other.localhost/echo HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk for GET":
        b"GET * HTTP/1.1\r\n" + H + b"\r\n",
    "not a request":
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_with_400_and_not_forwarded(fresh_hello, name):
    hello = fresh_hello
    raw = hello.raw(REJECTED[name])
    assert status_of(raw) == 400, raw[:200]
    assert b"Connection: close" in raw
    assert hello.up.hits == 0


def test_malformed_body_after_valid_head_is_cut_off(fresh_hello):
    hello = fresh_hello
    # the head was valid and went upstream; the broken chunk framing is never
    # passed on: the upstream sees the body end early, the client gets a 400
    raw = hello.raw(b"POST /upload HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n5\nworld\r\n0\r\n\r\n")
    assert status_of(raw) == 400
    assert raw.count(b"HTTP/1.1") == 1
    assert hello.request("hello.localhost")[0] == 200


def test_connect_method_refused(fresh_hello):
    hello = fresh_hello
    raw = hello.raw(b"CONNECT hello.localhost:443 HTTP/1.1\r\n" + H + b"\r\n")
    assert status_of(raw) == 405
    # an origin-form target (found by tests/fuzz) is no way around it
    raw = hello.raw(b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n")
    assert status_of(raw) == 405
    assert hello.up.hits == 0


@pytest.mark.parametrize("version", [b"2.0", b"3.0", b"1.2"])
def test_other_http_versions_are_answered_505(fresh_hello, version):
    hello = fresh_hello
    raw = hello.raw(b"GET /echo HTTP/" + version + b"\r\n" + H + b"\r\n")
    assert status_of(raw) == 505, raw[:200]
    assert b"HTTP Version Not Supported" in raw
    assert hello.up.hits == 0
    for ok in (b"1.0", b"1.1"):
        assert status_of(hello.raw(b"GET /echo HTTP/" + ok + b"\r\n" + H + b"\r\n")) == 200


def test_smuggled_second_request_never_reaches_upstream(fresh_hello):
    hello = fresh_hello
    # a valid request followed by an ambiguous one on the same connection: the
    # first is answered, the second refused; the smuggled GET /admin never passes.
    raw = hello.raw(b"GET /echo?first HTTP/1.1\r\n" + H + b"\r\n"
                    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 40\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n" + H + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.count(b"HTTP/1.1 400") == 1
    assert [path for _, path, _ in hello.up.seen] == ["/echo?first"]


def test_oversized_request_line_and_headers(upstreams, start_router):
    up = upstreams("a")
    router = start_router(routes(1, {"hello.localhost": ("hello", "www", [up.backend()])}),
                          env={"DOTCLOUD_ROUTER_MAX_REQUEST_LINE": "200",
                               "DOTCLOUD_ROUTER_MAX_HEADER_BYTES": "1000",
                               "DOTCLOUD_ROUTER_MAX_HEADERS": "10"})
    assert status_of(router.raw(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n" + H + b"\r\n")) == 414
    big = b"X-Big: " + b"b" * 1200 + b"\r\n"
    assert status_of(router.raw(b"GET / HTTP/1.1\r\n" + H + big + b"\r\n")) == 431
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(11))
    assert status_of(router.raw(b"GET / HTTP/1.1\r\n" + H + many + b"\r\n")) == 431
    # a header that never ends is cut off once past the limit, without waiting for it
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"X-Endless: e")
        time.sleep(0.2)
        s.sendall(b"e" * 5000)
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    assert up.hits == 0
    # within the limits all is well
    status, _, _ = router.request("hello.localhost", "/echo", headers={"X-Fine": "f" * 500})
    assert status == 200


def test_slowloris_timed_out_without_blocking_others(upstreams, start_router):
    up = upstreams("a")
    router = start_router(routes(1, {"hello.localhost": ("hello", "www", [up.backend()])}),
                          env={"DOTCLOUD_ROUTER_HEADER_TIMEOUT": "1"})
    slow = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", router.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: hel")
        slow.append(s)
    silent = socket.create_connection(("127.0.0.1", router.port), timeout=10)

    def drip():
        try:
            for s in slow:
                s.sendall(b"l")
        except OSError:
            pass

    # others are served while the slow clients dribble
    for _ in range(5):
        drip()
        status, _, _ = router.request("hello.localhost", "/echo", timeout=5)
        assert status == 200
        time.sleep(0.1)
    answers = [s.recv(4096) for s in slow]
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    assert silent.recv(4096).startswith(b"HTTP/1.1 408")
    for s in slow + [silent]:
        s.close()


def test_a_body_below_the_minimum_rate_is_cut_with_408(upstreams, start_router):
    up = upstreams("a")
    router = start_router(routes(1, {"hello.localhost": ("hello", "www", [up.backend()])}),
                          env={"DOTCLOUD_ROUTER_MIN_BODY_RATE": "200",
                               "DOTCLOUD_ROUTER_BODY_RATE_GRACE": "1"})
    with socket.create_connection(("127.0.0.1", router.port), timeout=15) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n")
        started = time.monotonic()
        answer = b""
        s.settimeout(0.3)
        while time.monotonic() - started < 10 and not answer:
            try:
                s.sendall(b"x" * 20)          # 20 bytes every 0.3 s: under 200 B/s
                answer = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    # A body at a fair pace, slower than one window, passes.
    with socket.create_connection(("127.0.0.1", router.port), timeout=15) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3000\r\n\r\n")
        for _ in range(10):
            s.sendall(b"y" * 300)             # 1000 B/s for 3 s
            time.sleep(0.3)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_idle_keep_alive_connection_closed(upstreams, start_router):
    up = upstreams("a")
    router = start_router(routes(1, {"hello.localhost": ("hello", "www", [up.backend()])}),
                          env={"DOTCLOUD_ROUTER_KEEPALIVE_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\n" + H + b"\r\n")
        f = s.makefile("rb")
        assert read_response(f)[0] == 200
        assert s.recv(10) == b""           # closed by the router, no error page


def test_router_survives_garbage_from_many_clients(fresh_hello):
    hello = fresh_hello
    def spray(i):
        try:
            hello.raw(bytes(range(256)) * (i + 1), timeout=3)
        except OSError:
            pass
    threads = [threading.Thread(target=spray, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hello.request("hello.localhost")[0] == 200
    assert hello.proc.poll() is None
