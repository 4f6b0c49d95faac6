"""HTTP/1.1 behaviour through the router, with real clients and real upstreams."""
import hashlib
import json
import socket
import threading
import time

import pytest

from routerkit import read_response, routes, status_of


@pytest.fixture
def hello(fresh_hello):
    """These tests do not change the router: they share one."""
    return fresh_hello


def echo(body: bytes) -> dict:
    return json.loads(body)


def test_forwards_request_and_routes_by_host(hello):
    status, headers, body = hello.request("hello.localhost", "/echo?x=1")
    assert status == 200
    seen = echo(body)
    assert seen["path"] == "/echo?x=1" and seen["method"] == "GET"
    assert seen["headers"]["host"] == "hello.localhost"
    for host in ("api.hello.localhost", "www.example.com", "HELLO.LocalHost:8080",
                 "hello.localhost."):
        status, _, body = hello.request(host, "/echo")
        assert status == 200, host
        assert echo(body)["headers"]["host"] == host


def test_unknown_host_is_404_and_empty_route_is_503(hello):
    status, headers, body = hello.request("nope.localhost")
    assert status == 404 and b"No application" in body
    assert headers["content-type"].startswith("text/html")
    status, _, body = hello.request("empty.localhost")
    assert status == 503 and b"no running instance" in body
    assert hello.up.hits == 0


def test_client_keep_alive_and_upstream_pool(hello):
    conn = hello.connect()
    ports = set()
    for i in range(20):
        conn.request("GET", f"/echo?i={i}", headers={"Host": "hello.localhost"})
        resp = conn.getresponse()
        assert resp.status == 200
        ports.add(echo(resp.read())["client_port"])
    conn.close()
    # one client connection, requests in sequence: one pooled upstream connection
    assert len(ports) == 1
    assert len(hello.up.connections) == 1


def test_pipelined_requests_answered_in_order(hello):
    reqs = b"".join(
        b"GET /%s HTTP/1.1\r\nHost: hello.localhost\r\n\r\n" % path
        for path in (b"slow?delay=0.3", b"echo?n=2", b"status?code=204", b"echo?n=4"))
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        s.sendall(reqs)
        f = s.makefile("rb")
        results = [read_response(f) for _ in range(4)]
    assert [r[0] for r in results] == [200, 200, 204, 200]
    assert echo(results[0][2])["path"] == "/slow?delay=0.3"
    assert echo(results[1][2])["path"] == "/echo?n=2"
    assert echo(results[3][2])["path"] == "/echo?n=4"


def test_pipelined_requests_each_routed_by_their_own_host(own_hello, upstreams):
    hello = own_hello
    other = upstreams("other")
    table = {"version": 2, "routes": {
        "hello.localhost": {"app": "hello", "service": "www", "backends": [hello.up.backend()]},
        "other.localhost": {"app": "other", "service": "www", "backends": [other.backend()]}}}
    hello.swap(table)
    reqs = (b"GET /echo HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"
            b"GET /echo HTTP/1.1\r\nHost: other.localhost\r\n\r\n"
            b"GET /echo HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        s.sendall(reqs)
        f = s.makefile("rb")
        servers = [echo(read_response(f)[2])["server"] for _ in range(3)]
    assert servers == ["a", "other", "a"]


def test_chunked_request_body_is_streamed_upstream(hello):
    conn = hello.connect()
    parts = [b"alpha-", b"beta-", b"gamma" * 1000]
    conn.request("POST", "/upload", body=iter(parts),
                 headers={"Host": "hello.localhost", "Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    resp = conn.getresponse()
    seen = echo(resp.read())
    assert resp.status == 200
    assert seen["body_len"] == sum(map(len, parts))
    assert seen["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert seen["headers"]["transfer-encoding"] == "chunked"
    # the connection stays usable after a chunked request
    conn.request("GET", "/echo", headers={"Host": "hello.localhost"})
    assert conn.getresponse().status == 200
    conn.close()


def test_chunked_response_is_relayed_and_trailers_dropped(hello):
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        s.sendall(b"GET /chunked?n=4 HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"
                  b"GET /echo HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        f = s.makefile("rb")
        status, headers, body = read_response(f)
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        assert body == b"piece-0;piece-1;piece-2;piece-3;"
        assert read_response(f)[0] == 200


def test_http10_client_gets_unframed_body_then_close(hello):
    raw = hello.raw(b"GET /chunked?n=2 HTTP/1.0\r\nHost: hello.localhost\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"piece-0;piece-1;"


def test_read_until_close_response_becomes_chunked(hello):
    conn = hello.connect()
    conn.request("GET", "/until-close", headers={"Host": "hello.localhost"})
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.read() == b"read-until-close body"
    conn.request("GET", "/echo", headers={"Host": "hello.localhost"})
    assert conn.getresponse().status == 200
    conn.close()


def test_head_keeps_content_length_and_sends_no_body(hello):
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        s.sendall(b"HEAD /echo HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        f = s.makefile("rb")
        line = f.readline()
        assert line.startswith(b"HTTP/1.1 200")
        head = b""
        while (l := f.readline()) != b"\r\n":
            head += l
        assert b"Content-Length:" in head
        # the next response must follow directly: no body bytes after a HEAD response
        s.sendall(b"GET /status?code=200 HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        status, _, body = read_response(f)
        assert (status, body) == (200, b"ok")


def test_204_and_304_have_no_body_and_keep_alive(hello):
    conn = hello.connect()
    for code in (204, 304, 200):
        conn.request("GET", f"/status?code={code}", headers={"Host": "hello.localhost"})
        resp = conn.getresponse()
        assert resp.status == code
        assert resp.read() == (b"ok" if code == 200 else b"")
    conn.close()


def test_expect_100_continue(hello):
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 100")
        assert f.readline() == b"\r\n"
        s.sendall(b"hello")
        status, _, body = read_response(f)
    assert status == 200 and echo(body)["body_len"] == 5


def test_informational_1xx_relayed_before_final_response(hello):
    raw = hello.raw(b"GET /early-hints HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 103 Early Hints\r\n")
    assert b"Link: </style.css>" in raw
    assert b"HTTP/1.1 200 OK" in raw and raw.endswith(b"after hints")


def test_forwarded_headers_request_id_and_hop_by_hop(hello):
    status, headers, body = hello.request("hello.localhost", headers={
        "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example", "Connection": "keep-alive, X-Private",
        "X-Private": "drop me", "Keep-Alive": "timeout=9", "TE": "trailers",
        "Proxy-Authorization": "Basic eA==", "X-Kept": "yes"})
    seen = echo(body)["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"          # not trusted from clients
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "hello.localhost"
    assert seen["host"] == "hello.localhost"
    generated = seen["x-request-id"]
    assert len(generated) >= 16
    _, _, again = hello.request("hello.localhost")
    assert json.loads(again)["headers"]["x-request-id"] != generated
    for hop in ("x-private", "keep-alive", "te", "proxy-authorization"):
        assert hop not in seen
    assert seen["x-kept"] == "yes"
    # response hop-by-hop headers are removed too
    assert "keep-alive" not in headers and "x-hop" not in headers
    assert headers["x-server"] == "a"
    _, _, body = hello.request("hello.localhost", headers={"X-Request-Id": "abc-123"})
    assert echo(body)["headers"]["x-request-id"] == "abc-123"


def test_forwarded_for_appended_from_trusted_proxy(upstreams, start_router):
    from routerkit import routes
    up = upstreams("a")
    router = start_router(routes(1, {"t.localhost": ("t", "www", [up.backend()])}),
                          env={"DOTCLOUD_ROUTER_TRUSTED_PROXIES": "127.0.0.1"})
    _, _, body = router.request("t.localhost", headers={
        "X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "https"})
    seen = echo(body)["headers"]
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"


def test_absolute_form_for_the_same_host_is_accepted(hello):
    raw = hello.raw(b"GET http://hello.localhost/echo?abs=1 HTTP/1.1\r\nHost: hello.localhost\r\n"
                    b"Connection: close\r\n\r\n")
    assert status_of(raw) == 200
    assert echo(raw.partition(b"\r\n\r\n")[2])["path"] == "/echo?abs=1"


def test_body_split_across_reads_then_pipelined_requests(hello):
    body = bytes(range(256)) * 64            # 16 KiB
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body[:1000])
        time.sleep(0.2)                      # the rest arrives in later reads
        s.sendall(body[1000:9000])
        time.sleep(0.2)
        # the end of the body and two more requests in one segment
        s.sendall(body[9000:] + b"POST /upload HTTP/1.1\r\nHost: hello.localhost\r\n"
                  b"Content-Length: 5\r\n\r\nhello" + b"GET /echo?last HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        f = s.makefile("rb")
        first, second, third = (read_response(f) for _ in range(3))
    assert echo(first[2])["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo(second[2])["body_len"] == 5
    assert echo(third[2])["path"] == "/echo?last"
    assert [path for _, path, _ in hello.up.seen] == ["/upload", "/upload", "/echo?last"]


class SameHead:
    """A keep-alive upstream whose every response has the same head (no Date):
    the router forwards repeats without parsing them again. Bodies alternate
    between one piece with the head and two pieces, the second sent later."""

    HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nKeep-Alive: timeout=5\r\n"
            b"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nContent-Length: 10\r\n\r\n")

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answered = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                request, buf = buf.split(b"\r\n\r\n", 1)
                self.answered += 1
                if request.startswith(b"HEAD "):
                    conn.sendall(self.HEAD)
                elif self.answered % 2:
                    conn.sendall(self.HEAD + b"helloworld")
                else:
                    conn.sendall(self.HEAD + b"hello")
                    time.sleep(0.05)
                    conn.sendall(b"world")

    def backend(self):
        return {"id": "same#0", "host": "127.0.0.1", "port": self.port}


def test_repeated_response_heads_are_forwarded_the_same_way(start_router):
    up = SameHead()
    router = start_router(routes(1, {"app.localhost": ("app", "www", [up.backend()])}))
    conn = router.connect()
    for method in ("GET", "GET", "GET", "HEAD", "GET", "GET", "HEAD", "GET"):
        conn.request(method, "/", headers={"Host": "app.localhost"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200
        assert body == (b"" if method == "HEAD" else b"helloworld")
        assert resp.getheader("Content-Length") == "10"
        assert resp.getheader("X-Hop") is None and resp.getheader("Keep-Alive") is None
    conn.close()
    up.sock.close()


class Counting(SameHead):
    """Answers the same head, and the same body until the fourth request."""

    def _serve(self, conn):
        with conn:
            while conn.recv(65536):      # one small request per read
                self.answered += 1
                conn.sendall(self.HEAD + (b"helloworld" if self.answered < 4 else b"HELLOWORLD"))


def test_a_repeated_response_is_forwarded_as_it_comes_each_time(start_router):
    up = Counting()
    router = start_router(routes(1, {"app.localhost": ("app", "www", [up.backend()])}))
    conn = router.connect()
    bodies = []
    for _ in range(6):
        conn.request("GET", "/", headers={"Host": "app.localhost"})
        resp = conn.getresponse()
        bodies.append(resp.read())
    assert bodies == [b"helloworld"] * 3 + [b"HELLOWORLD"] * 3
    conn.close()
    up.sock.close()


def test_repeated_requests_are_rewritten_and_routed_each_time(own_hello, upstreams):
    hello = own_hello
    plain = b"GET /echo?same HTTP/1.1\r\nHost: hello.localhost\r\nAccept: */*\r\n\r\n"
    given = (b"GET /echo?same HTTP/1.1\r\nHost: hello.localhost\r\nX-Request-Id: given-1\r\n"
             b"X-Forwarded-For: 6.6.6.6\r\n\r\n")
    closing = b"GET /echo?same HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        f = s.makefile("rb")
        seen = []
        for raw in (plain, given, plain, given, plain):
            s.sendall(raw)
            status, _, body = read_response(f)
            assert status == 200
            seen.append(echo(body))
        # the route is looked up for every repeat: a swap moves the next one
        other = upstreams("other")
        hello.swap({"version": 2, "routes": {"hello.localhost": {
            "app": "hello", "service": "www", "backends": [other.backend()]}}})
        s.sendall(plain)
        status, _, body = read_response(f)
        assert status == 200 and echo(body)["server"] == "other"
        # a host swapped out answers 404 to the very next repeat, and back in, 200
        hello.swap({"version": 3, "routes": {}})
        s.sendall(plain)
        status, _, _ = read_response(f)
        assert status == 404
        s.close()
        s = socket.create_connection(("127.0.0.1", hello.port), timeout=10)
        f = s.makefile("rb")
        hello.swap({"version": 4, "routes": {"hello.localhost": {
            "app": "hello", "service": "www", "backends": [other.backend()]}}})
        s.sendall(plain)
        status, _, body = read_response(f)
        assert status == 200 and echo(body)["server"] == "other"
        for _ in range(2):
            s.sendall(closing)
            status, headers, _ = read_response(f)
            assert status == 200 and headers["connection"] == "close"
            assert f.read() == b""
            s.close()
            s = socket.create_connection(("127.0.0.1", hello.port), timeout=10)
            f = s.makefile("rb")
        s.close()
    ids = [x["headers"]["x-request-id"] for x in seen]
    assert ids[1] == ids[3] == "given-1"
    assert len({ids[0], ids[2], ids[4]}) == 3 and "given-1" not in (ids[0], ids[2], ids[4])
    # the access log names the id each repeat was sent upstream with
    for rid in (ids[0], ids[2], ids[4]):
        assert len(hello.log_events("request", match=f"request_id='{rid}'")) == 1, rid
    assert len(hello.log_events("request", match="request_id='given-1'")) == 2
    for x in seen:
        assert x["path"] == "/echo?same"
        assert x["headers"]["x-forwarded-for"] == "127.0.0.1"     # a spoofed one is dropped
        assert x["headers"]["x-forwarded-host"] == "hello.localhost"
    assert [line for line in seen[0]["header_list"] if line[0] == "Accept"] == [["Accept", "*/*"]]
