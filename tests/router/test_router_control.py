"""The control socket, atomic swaps (under load, with WebSockets), persistence, signals."""
import json
import signal
import socket
import threading
import time

from routerkit import RouterProcess, WebSocketUpstream, routes


def table_for(version, *ups, host="app.localhost"):
    return routes(version, {host: ("app", "www", [u.backend() for u in ups])})


def test_reload_swaps_and_reports_version(upstreams, start_router):
    a, b = upstreams("a"), upstreams("b")
    router = start_router(table_for(1, a))
    assert router.control({"op": "status"}) == {"ok": True, "version": 1, "routes": 1,
                                                "in_flight": {}}
    router.write_routes(table_for(2, b))
    assert router.request("app.localhost")[2].count(b'"server": "a"') == 1   # not yet
    assert router.control({"op": "reload"}) == {"ok": True, "version": 2}
    _, _, body = router.request("app.localhost")
    assert json.loads(body)["server"] == "b"


def test_bad_reload_keeps_the_old_table(upstreams, start_router):
    a = upstreams("a")
    router = start_router(table_for(1, a))
    for broken in (b"{not json", b'{"version": 2, "routes": []}',
                   b'{"version": 2, "routes": {"x.localhost": {"app": "x", "service": "www",'
                   b' "backends": [{"host": "127.0.0.1", "port": 0}]}}}'):
        (router.run_dir / "routes.json").write_bytes(broken)
        reply = router.control({"op": "reload"})
        assert reply["ok"] is False and "routes.json" in reply["error"]
        assert router.request("app.localhost")[0] == 200
    (router.run_dir / "routes.json").unlink()
    assert router.control({"op": "reload"})["ok"] is False
    assert router.control({"op": "status"})["version"] == 1


def test_bad_control_requests_answered_and_harmless(upstreams, start_router):
    router = start_router(table_for(1, upstreams("a")))
    for bad in (b"nonsense\n", b"[1, 2]\n", b'{"op": "explode"}\n', b'{"no": "op"}\n',
                b'{"op": "drain"}\n', b'{"op": "drain", "backends": [["127.0.0.1"]]}\n',
                b'{"op": "drain", "backends": [], "timeout": -1}\n',
                b'{"op": "drain", "backends": [["h", true]]}\n'):
        reply = router.control(bad)
        assert reply["ok"] is False and reply["error"], bad
    # several requests on one connection, one reply line each
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(router.run_dir / "router.sock"))
        s.sendall(b'{"op": "status"}\n\n{"op": "reload"}\n')
        f = s.makefile("rb")
        assert json.loads(f.readline())["routes"] == 1
        assert json.loads(f.readline()) == {"ok": True, "version": 1}
    # an over-long line is refused without hurting the router
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(router.run_dir / "router.sock"))
        try:
            s.sendall(b"x" * (2 << 20) + b"\n")
        except BrokenPipeError:
            pass                     # the router answered and hung up before reading it all
        assert json.loads(s.makefile("rb").readline())["ok"] is False
    assert router.request("app.localhost")[0] == 200


def test_drain_waits_for_in_flight_requests(upstreams, start_router):
    a, b = upstreams("a"), upstreams("b")
    router = start_router(table_for(1, a))
    result = {}
    slow = threading.Thread(target=lambda: result.update(r=router.request("app.localhost", "/slow?delay=1.5")))
    slow.start()
    time.sleep(0.3)
    assert router.control({"op": "status"})["in_flight"] == {f"127.0.0.1:{a.port}": 1}
    router.swap(table_for(2, b))
    # a short drain times out and says how many are left
    assert router.control({"op": "drain", "backends": [["127.0.0.1", a.port]], "timeout": 0.1}) == \
        {"ok": True, "drained": False, "in_flight": 1}
    reply = router.control({"op": "drain", "backends": [["127.0.0.1", a.port]], "timeout": 10})
    assert reply == {"ok": True, "drained": True, "in_flight": 0}
    slow.join()
    assert result["r"][0] == 200          # the in-flight request finished on the old instance
    assert json.loads(router.request("app.localhost")[2])["server"] == "b"


def test_swap_under_load_loses_no_request(upstreams, start_router):
    a, b = upstreams("a"), upstreams("b")
    router = start_router(table_for(1, a))
    stop = threading.Event()
    failures, answered = [], {"a": 0, "b": 0}
    lock = threading.Lock()

    def hammer():
        conn = router.connect()
        while not stop.is_set():
            try:
                conn.request("GET", "/echo", headers={"Host": "app.localhost"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    failures.append(resp.status)
                    continue
                with lock:
                    answered[json.loads(body)["server"]] += 1
            except Exception as exc:       # any failure counts, including a reset
                failures.append(repr(exc))
                conn.close()
                conn = router.connect()
        conn.close()

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    version = 1
    for _ in range(10):
        time.sleep(0.1)
        version += 1
        router.swap(table_for(version, b if version % 2 == 0 else a))
    time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert answered["a"] > 0 and answered["b"] > 0


def test_websocket_passthrough_survives_a_swap(upstreams, start_router):
    from websockets.sync.client import connect
    ws_a, ws_b = WebSocketUpstream("wa"), WebSocketUpstream("wb")
    try:
        router = start_router(routes(1, {"app.localhost": ("app", "www", [ws_a.backend()])}))
        sock = socket.create_connection(("127.0.0.1", router.port))
        with connect(f"ws://app.localhost:{router.port}/chat", sock=sock) as ws:
            ws.send("one")
            assert ws.recv(timeout=5) == "wa:one"
            router.swap(routes(2, {"app.localhost": ("app", "www", [ws_b.backend()])}))
            # the upgraded connection is not a request in flight: drain does not wait for it
            assert router.control({"op": "drain", "backends": [["127.0.0.1", ws_a.port]],
                                   "timeout": 5})["drained"] is True
            ws.send("two")
            assert ws.recv(timeout=5) == "wa:two"
            big = "x" * (1 << 19)
            ws.send(big)
            assert ws.recv(timeout=10) == "wa:" + big
        sock2 = socket.create_connection(("127.0.0.1", router.port))
        with connect(f"ws://app.localhost:{router.port}/chat", sock=sock2) as ws:
            ws.send("three")
            assert ws.recv(timeout=5) == "wb:three"
        assert router.log_events("request", match="status=101")
    finally:
        ws_a.stop()
        ws_b.stop()


def test_upgrade_refused_by_upstream_is_relayed(fresh_hello):
    hello = fresh_hello
    raw = hello.raw(b"GET /echo HTTP/1.1\r\nHost: hello.localhost\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    seen = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert seen["headers"]["upgrade"] == "websocket"


def test_table_persisted_across_restart(upstreams, start_router, tmp_path):
    a = upstreams("a")
    router = start_router(table_for(1, a), data=tmp_path / "data")
    assert router.request("app.localhost")[0] == 200
    assert router.stop() == 0
    assert not (router.run_dir / "router.sock").exists()
    # a restarted router serves at once from routes.json; the stale socket is replaced
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(router.run_dir / "router.sock"))
    stale.close()
    again = start_router(data=tmp_path / "data")
    assert again.request("app.localhost")[0] == 200
    assert again.control({"op": "status"})["version"] == 1
    # a second router on the same data directory refuses to start
    import pytest
    with pytest.raises(RuntimeError, match="another router is running"):
        RouterProcess(tmp_path / "data")
    assert again.request("app.localhost")[0] == 200


def test_missing_or_corrupt_table_at_start_is_empty_not_a_crash(start_router, tmp_path):
    router = start_router()
    assert router.request("app.localhost")[0] == 404
    data = tmp_path / "corrupt"
    (data / "run").mkdir(parents=True)
    (data / "run" / "routes.json").write_text('{"version": 3, "rout')
    router = start_router(data=data)
    assert router.request("app.localhost")[0] == 404
    assert router.log_events("routes_unavailable")


def test_sigint_and_sigterm_stop_cleanly(start_router):
    router = start_router()
    assert router.stop(signal.SIGINT) == 0
    router = start_router()
    assert router.stop(signal.SIGTERM) == 0
    assert router.log_events("router_stopped")


def test_router_json_and_listening_event(start_router):
    router = start_router()
    info = json.loads((router.run_dir / "router.json").read_text())
    assert info == {"pid": router.proc.pid, "bind": "127.0.0.1", "port": router.port,
                    "admin_port": router.admin_port}
    listening = router.log_events("router_listening")
    assert listening and f"port={router.port}" in listening[0]


def test_bad_settings_refused_at_start(tmp_path):
    import pytest
    with pytest.raises(RuntimeError):
        RouterProcess(tmp_path / "bad", env={"DOTCLOUD_ROUTER_CONNECT_TIMEOUT": "soon"})


def test_access_log_and_metrics(hello):
    hello.request("hello.localhost", "/echo?q=1")
    hello.request("nope.localhost")
    hello.request("empty.localhost")
    line = hello.log_events("request", match="path='/echo?q=1'")[0]
    for field in ("app='hello'", "service='www'", "instance='a#0'", "status=200", "bytes=",
                  "duration_ms=", "request_id=", "method='GET'"):
        assert field in line
    status, text = hello.admin_get("/metrics")
    text = text.decode()
    assert status == 200
    assert 'dotcloud_router_requests_total{app="hello",code="200"} 1' in text
    assert 'dotcloud_router_requests_total{app="-",code="404"} 1' in text
    assert 'dotcloud_router_errors_total{app="empty"} 1' in text
    assert 'dotcloud_router_request_duration_seconds_count{app="hello"} 1' in text
    assert "dotcloud_router_connections" in text
    assert hello.admin_get("/status")[0] == 200
    assert hello.admin_get("/nothing")[0] == 404
    # the admin port serves no app, whatever the Host
    assert b"dotcloud_router" not in hello.request("hello.localhost", "/metrics")[2]


def test_pool_idle_connections_expire_and_drain_closes_them(upstreams, start_router):
    a = upstreams("a")
    router = start_router(table_for(1, a), env={"DOTCLOUD_ROUTER_POOL_IDLE_TIMEOUT": "0.5"})
    first = json.loads(router.request("app.localhost")[2])["client_port"]
    assert json.loads(router.request("app.localhost")[2])["client_port"] == first   # pooled
    time.sleep(1.5)
    second = json.loads(router.request("app.localhost")[2])["client_port"]
    assert second != first                      # the idle one was closed, a new one opened
    router2 = start_router(table_for(1, a))
    port = json.loads(router2.request("app.localhost")[2])["client_port"]
    assert router2.control({"op": "drain", "backends": [["127.0.0.1", a.port]], "timeout": 1}) == \
        {"ok": True, "drained": True, "in_flight": 0}
    assert json.loads(router2.request("app.localhost")[2])["client_port"] != port


def test_sigterm_lets_in_flight_requests_finish(upstreams, start_router):
    a = upstreams("a")
    router = start_router(table_for(1, a))
    result = {}
    slow = threading.Thread(target=lambda: result.update(r=router.request("app.localhost", "/slow?delay=1")))
    slow.start()
    time.sleep(0.3)
    assert router.stop(signal.SIGTERM) == 0
    slow.join()
    assert result["r"][0] == 200
    # after the stop nothing listens any more
    import pytest
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", router.port), timeout=2).close()


def test_upgrade_to_unknown_host_is_404_and_closed(fresh_hello):
    hello = fresh_hello
    raw = hello.raw(b"GET /chat HTTP/1.1\r\nHost: nope.localhost\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\nearly bytes")
    assert raw.startswith(b"HTTP/1.1 404") and b"Connection: close" in raw


def test_request_that_cannot_be_retried_avoids_long_idle_connections(upstreams, start_router):
    a = upstreams("a")
    router = start_router(table_for(1, a))
    first = json.loads(router.request("app.localhost")[2])["client_port"]
    time.sleep(1.3)
    # a GET could be retried if the app closed this connection meanwhile: it reuses it
    assert json.loads(router.request("app.localhost")[2])["client_port"] == first
    time.sleep(1.3)
    # a POST with a body could not: it gets a fresh connection
    posted = json.loads(router.request("app.localhost", method="POST", body=b"x")[2])
    assert posted["client_port"] != first and posted["body_len"] == 1
