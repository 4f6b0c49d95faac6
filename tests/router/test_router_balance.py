"""Spreading requests, retrying, passive health and the 502/504 error paths."""
import http.client
import json
import socket
import threading
import time

import pytest

from routerkit import free_port, routes


def server_of(router, host="app.localhost", path="/echo", method="GET"):
    status, _, body = router.request(host, path, method=method)
    return status, (json.loads(body)["server"] if status == 200 else body)


def test_round_robin_across_instances(upstreams, start_router):
    a, b = upstreams("a"), upstreams("b")
    router = start_router(routes(1, {"app.localhost": ("app", "www", [a.backend(), b.backend(1)])}))
    servers = [server_of(router)[1] for _ in range(20)]
    assert servers.count("a") == 10 and servers.count("b") == 10
    assert all(x != y for x, y in zip(servers, servers[1:]))


def test_least_connections_avoids_the_busy_instance(upstreams, start_router):
    a, b = upstreams("a"), upstreams("b")
    router = start_router(routes(1, {"app.localhost": ("app", "www", [a.backend(), b.backend(1)])}),
                          env={"DOTCLOUD_ROUTER_BALANCE": "least_conn"})
    slow = {}
    thread = threading.Thread(target=lambda: slow.update(r=server_of(router, path="/slow?delay=1.5")))
    thread.start()
    time.sleep(0.3)
    fast = {server_of(router)[1] for _ in range(6)}
    thread.join()
    busy = slow["r"][1]
    assert fast == {"a", "b"} - {busy}


def test_connect_failure_retried_and_instance_marked_down(upstreams, start_router):
    a = upstreams("a")
    dead = {"id": "dead#0", "host": "127.0.0.1", "port": free_port()}
    router = start_router(routes(1, {"app.localhost": ("app", "www", [dead, a.backend()])}))
    results = [server_of(router) for _ in range(10)]
    assert results == [(200, "a")] * 10
    # the dead instance was tried once, then skipped while marked down
    failures = router.log_events("upstream_failed")
    assert len(failures) == 1 and "reason='refused'" in failures[0]
    # a POST is retried too: nothing was sent when the connection could not be made
    assert server_of(router, method="POST") == (200, "a")


def test_all_instances_unreachable_is_502(start_router):
    dead = [{"id": f"dead#{i}", "host": "127.0.0.1", "port": free_port()} for i in range(2)]
    router = start_router(routes(1, {"app.localhost": ("app", "www", dead)}))
    status, _, body = router.request("app.localhost")
    assert status == 502 and b"could not be reached" in body
    assert len(router.log_events("upstream_failed")) == 2
    # still 502 (not 503) while both are marked down
    assert router.request("app.localhost")[0] == 502


class Resetter:
    """Accepts connections, reads the request, closes without a byte of response."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()

    def backend(self):
        return {"id": "resetter#0", "host": "127.0.0.1", "port": self.port}


def test_idempotent_request_retried_after_reset_without_response(upstreams, start_router):
    a = upstreams("a")
    resetter = Resetter()
    router = start_router(routes(1, {
        "app.localhost": ("app", "www", [resetter.backend(), a.backend()]),
        "only.localhost": ("only", "www", [resetter.backend()])}))
    assert [server_of(router)[0] for _ in range(6)] == [200] * 6
    assert resetter.accepted >= 1
    # a POST with a body is not replayed: the instance may have acted on it
    status, _, body = router.request("only.localhost", "/echo", method="POST", body=b"data")
    assert status == 502
    resetter.sock.close()


def test_stale_pooled_connections_to_a_dead_instance_never_cost_the_healthy_one_its_try(
        upstreams, start_router):
    a, b = upstreams("a"), upstreams("b")
    router = start_router(routes(1, {"app.localhost": ("app", "www", [a.backend()])}))
    # several requests at once leave several keep-alive connections to a in the pool
    threads = [threading.Thread(target=server_of, args=(router, "app.localhost",
                                                        "/slow?delay=0.5"))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(a.connections) == 6
    router.swap(routes(2, {"app.localhost": ("app", "www", [a.backend(), b.backend(1)])}))
    a.kill()
    # round robin sends the first of these to a: its stale connections and then
    # its closed port fail, and each request is still answered by b
    answers = [server_of(router) for _ in range(6)]
    assert answers == [(200, "b")] * 6
    status, _, _ = router.request("app.localhost", method="HEAD")
    assert status == 200
    assert "reason='refused'" in router.log_events("upstream_failed")[0]


def test_first_byte_timeout_is_504(upstreams, start_router):
    a = upstreams("a")
    router = start_router(routes(1, {"app.localhost": ("app", "www", [a.backend()])}),
                          env={"DOTCLOUD_ROUTER_FIRST_BYTE_TIMEOUT": "1"})
    status, _, body = router.request("app.localhost", "/slow?delay=4")
    assert status == 504 and b"did not answer in time" in body


def test_connect_timeout_is_504(start_router):
    # a listener whose accept queue is full: new connections hang in SYN-SENT
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(hole.getsockname())
        fillers.append(c)
    time.sleep(0.2)
    backend = {"id": "hole#0", "host": "127.0.0.1", "port": hole.getsockname()[1]}
    router = start_router(routes(1, {"app.localhost": ("app", "www", [backend])}),
                          env={"DOTCLOUD_ROUTER_CONNECT_TIMEOUT": "0.5"})
    status, _, _ = router.request("app.localhost")
    assert status == 504
    assert "reason='timeout'" in router.log_events("upstream_failed")[0]
    for c in fillers + [hole]:
        c.close()


def test_idle_timeout_cuts_a_stalled_response(upstreams, start_router):
    a = upstreams("a")
    router = start_router(routes(1, {"app.localhost": ("app", "www", [a.backend()])}),
                          env={"DOTCLOUD_ROUTER_IDLE_TIMEOUT": "1"})
    conn = router.connect()
    # the instance stalls for 30 s; only the router's 1 s idle timeout ends it sooner
    conn.request("GET", "/stall?delay=30", headers={"Host": "app.localhost"})
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    assert router.log_events("request", match="idle timeout")


def test_invalid_upstream_response_is_502(fresh_hello):
    hello = fresh_hello
    status, _, body = hello.request("hello.localhost", "/garbage")
    assert status == 502 and b"invalid response" in body
    assert hello.request("hello.localhost")[0] == 200


def test_upstream_dying_mid_response_cuts_the_client(fresh_hello):
    hello = fresh_hello
    raw = hello.raw(b"GET /die HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 100000" in head
    assert body == b"partial"             # then the router closed the connection
    assert hello.request("hello.localhost")[0] == 200


class InstantResetter:
    """Resets every connection the moment it is accepted, before reading a byte:
    an instance going away with connections still in its backlog."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()

    def backend(self):
        return {"id": "instant#0", "host": "127.0.0.1", "port": self.port}


def test_connections_reset_on_accept_are_retried_and_never_hang(upstreams, start_router):
    a = upstreams("a")
    resetter = InstantResetter()
    router = start_router(
        routes(1, {"app.localhost": ("app", "www", [resetter.backend(), a.backend()])}),
        env={"DOTCLOUD_ROUTER_DOWN_SECONDS": "0.001"})    # keep trying the resetter
    results = []

    def client():
        for _ in range(25):
            try:
                results.append(router.request("app.localhost", "/echo", timeout=10)[0])
            except Exception as exc:          # a hang shows up here as a timeout
                results.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 200
    assert "router_bug" not in router.log()
    assert router.log_events("upstream_failed")
    resetter.sock.close()
