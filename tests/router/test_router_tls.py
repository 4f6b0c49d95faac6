"""HTTPS in the router: real TLS on real sockets, certificates from a CA made by the test.

SNI picks each name's certificate (DATA/tls/NAME), the platform's wildcard
covers APP.DOMAIN and unknown names, every HTTP/1.1 feature works over TLS,
plain HTTP is redirected once a name has a certificate, and certificates are
reloaded without dropping a connection.
"""
import json
import signal
import socket
import ssl
import threading
import time

import pytest
from routerkit import WebSocketUpstream, read_response, routes
from tlskit import CA, serial_of

from dotcloud import tlsstore

NAMES = ("a.example.com", "b.example.com", "open.example.com", "strict.example.com")


@pytest.fixture(scope="module")
def ca():
    return CA()


def table(up, version=1, **extra):
    doc = routes(version, {name: ("shop", "www", [up.backend()]) for name in NAMES})
    doc["routes"]["open.example.com"]["allow_http"] = True
    doc["routes"]["strict.example.com"]["hsts"] = True
    doc["routes"]["hello.localhost"] = {"app": "hello", "service": "www",
                                        "backends": [up.backend()]}
    doc["routes"].update(extra)
    return doc


def store(data, ca, name, *names, **kw):
    chain, key, leaf = ca.issue(*(names or (name,)), **kw)
    tlsstore.save(data, name, chain, key)
    return leaf


@pytest.fixture
def tls_router(tmp_path, ca, upstreams, start_router):
    """A router with its own certificates for a., b., open. and strict.example.com."""
    data = tmp_path / "tlsdata"
    for name in NAMES:
        store(data, ca, name)
    up = upstreams("a")
    router = start_router(table(up), data=data, args=("--https-port", "0"))
    router.up = up
    return router


def handshake(router, ca, name, maximum=None):
    """(TLS socket, peer certificate DER) for a connection asking for `name`."""
    raw = socket.create_connection(("127.0.0.1", router.https_port), timeout=10)
    tls = ca.client_context(maximum).wrap_socket(raw, server_hostname=name)
    return tls, tls.getpeercert(binary_form=True)


def get(sock, host, path="/echo", extra=b""):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra))
    return read_response(sock.makefile("rb"))


def test_sni_gives_each_name_its_certificate_over_tls12_and_13(tls_router, ca):
    seen = {}
    for name in ("a.example.com", "b.example.com"):
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            sock, der = handshake(tls_router, ca, name, maximum=version)
            with sock:
                assert sock.version() == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2
                                          else "TLSv1.3")
                assert sock.selected_alpn_protocol() in (None, "http/1.1")
                status, _, body = get(sock, name)
                assert status == 200 and json.loads(body)["headers"]["host"] == name
            seen.setdefault(name, set()).add(serial_of(der))
    # the default context verified the name; each name had one certificate of its own
    assert len(seen["a.example.com"]) == 1 and seen["a.example.com"] != seen["b.example.com"]


def test_x_forwarded_proto_is_https_over_tls_and_http_in_plain(tls_router, ca):
    sock, _ = handshake(tls_router, ca, "a.example.com")
    with sock:
        _, _, body = get(sock, "a.example.com")
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"
    # a client's own X-Forwarded-Proto is not believed
    sock, _ = handshake(tls_router, ca, "a.example.com")
    with sock:
        _, _, body = get(sock, "a.example.com", extra=b"X-Forwarded-Proto: http\r\n")
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"
    status, _, body = tls_router.request("open.example.com")
    assert status == 200 and json.loads(body)["headers"]["x-forwarded-proto"] == "http"


def test_plain_http_redirected_with_308_except_acme_path_and_allow_http(tls_router):
    port = tls_router.https_port
    status, headers, _ = tls_router.request("a.example.com", "/echo?x=1")
    assert status == 308 and headers["location"] == f"https://a.example.com:{port}/echo?x=1"
    status, headers, _ = tls_router.request("B.Example.com:80", "/p", method="POST", body=b"x")
    assert status == 308 and headers["location"] == f"https://b.example.com:{port}/p"
    # the ACME challenge path reaches the app (or whoever answers it) over plain HTTP
    hits = tls_router.up.hits
    status, _, _ = tls_router.request("a.example.com", "/.well-known/acme-challenge/tok")
    assert status == 404 and tls_router.up.hits == hits + 1      # the upstream's own 404
    # --allow-http keeps plain HTTP; a name without a certificate is plain
    assert tls_router.request("open.example.com")[0] == 200
    assert tls_router.request("hello.localhost")[0] == 200
    # repeated on a keep-alive connection (the requests the router remembers)
    conn = tls_router.connect()
    for _ in range(3):
        conn.request("GET", "/echo", headers={"Host": "a.example.com"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 308
    conn.close()


def test_hsts_only_on_https_responses_of_hsts_names(tls_router, ca):
    for _ in range(2):              # the second one from the router's memo of heads
        sock, _ = handshake(tls_router, ca, "strict.example.com")
        with sock:
            status, headers, _ = get(sock, "strict.example.com")
            assert status == 200
            assert headers["strict-transport-security"] == "max-age=31536000"
            status, headers, _ = get(sock, "strict.example.com", "/chunked")
            assert status == 200 and "strict-transport-security" in headers
    sock, _ = handshake(tls_router, ca, "a.example.com")
    with sock:
        assert "strict-transport-security" not in get(sock, "a.example.com")[1]


def test_keep_alive_pipelining_and_streaming_over_tls(tls_router, ca):
    sock, _ = handshake(tls_router, ca, "a.example.com")
    with sock:
        f = sock.makefile("rb")
        pipelined = b"".join(b"GET /echo?n=%d HTTP/1.1\r\nHost: a.example.com\r\n\r\n" % i
                             for i in range(5))
        sock.sendall(pipelined)
        for i in range(5):
            status, _, body = read_response(f)
            assert status == 200 and json.loads(body)["path"] == f"/echo?n={i}"
        sock.sendall(b"GET /chunked?n=50 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        status, headers, body = read_response(f)
        assert headers["transfer-encoding"] == "chunked" and body.count(b"piece-") == 50
        sock.sendall(b"GET /big?size=3000000 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        status, _, body = read_response(f)
        assert status == 200 and len(body) == 3000000
        payload = b"y" * 2_000_000
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: %d\r\n\r\n"
                     % len(payload) + payload)
        status, _, body = read_response(f)
        assert json.loads(body)["body_len"] == len(payload)


def test_websocket_over_tls(tmp_path, ca, start_router):
    from websockets.sync.client import connect
    ws_up = WebSocketUpstream("w")
    data = tmp_path / "ws"
    store(data, ca, "ws.example.com")
    try:
        router = start_router(routes(1, {"ws.example.com": ("chat", "www", [ws_up.backend()])}),
                              data=data, args=("--https-port", "0"))
        sock = socket.create_connection(("127.0.0.1", router.https_port), timeout=10)
        with connect(f"wss://ws.example.com:{router.https_port}/", sock=sock,
                     ssl=ca.client_context()) as ws:
            for message in ("one", "two", "x" * 100000):
                ws.send(message)
                assert ws.recv(timeout=10) == f"w:{message}"
    finally:
        ws_up.stop()


def test_platform_wildcard_and_unknown_names(tmp_path, ca, upstreams, start_router):
    # OpenSSL takes no wildcard directly under a single label (*.localhost):
    # the platform's domain here is apps.example
    chain, key, _ = ca.issue("*.apps.example", "apps.example")
    (tmp_path / "p.pem").write_bytes(chain)
    (tmp_path / "p.key").write_bytes(key)
    up = upstreams("a")
    data = tmp_path / "wild"
    store(data, ca, "a.example.com")
    app = {"app": "hello", "service": "www", "backends": [up.backend()]}
    router = start_router(table(up, **{"hello.apps.example": app,
                                       "api.hello.apps.example": dict(app, service="api")}),
                          data=data, args=(
        "--https-port", "0", "--tls-cert", str(tmp_path / "p.pem"),
        "--tls-key", str(tmp_path / "p.key"), "--domain", "apps.example"))
    sock, der = handshake(router, ca, "hello.apps.example")
    with sock:
        assert get(sock, "hello.apps.example")[0] == 200
    wildcard = serial_of(der)
    # SERVICE.APP.DOMAIN is served the same certificate (a wildcard covers one
    # label: the operator's certificate may name *.APP.DOMAIN too)
    raw = socket.create_connection(("127.0.0.1", router.https_port), timeout=10)
    ctx = ca.client_context()
    ctx.check_hostname = False
    with ctx.wrap_socket(raw, server_hostname="api.hello.apps.example") as sock:
        assert serial_of(sock.getpeercert(binary_form=True)) == wildcard
        assert get(sock, "api.hello.apps.example")[0] == 200
    # a name's own certificate wins over the platform's
    assert serial_of(handshake(router, ca, "a.example.com")[1]) != wildcard
    # an unknown name gets the platform's certificate (not valid for it: verified, refused)
    raw = socket.create_connection(("127.0.0.1", router.https_port), timeout=10)
    ctx = ca.client_context()
    ctx.check_hostname = False
    with ctx.wrap_socket(raw, server_hostname="unknown.example.org") as sock:
        assert serial_of(sock.getpeercert(binary_form=True)) == wildcard
    # and plain HTTP to APP.DOMAIN is redirected now that it has a certificate
    assert router.request("hello.apps.example")[0] == 308
    # but not a name the wildcard does not cover (HTTPS would not be trusted there)
    assert router.request("api.hello.apps.example")[0] == 200


def test_unknown_name_without_platform_certificate_fails_the_handshake(tls_router, ca):
    raw = socket.create_connection(("127.0.0.1", tls_router.https_port), timeout=10)
    ctx = ca.client_context()
    # refused during the handshake (an unrecognized_name alert, or the close after it)
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name|EOF"):
        ctx.wrap_socket(raw, server_hostname="nobody.example.org")
    raw.close()
    sock, _ = handshake(tls_router, ca, "a.example.com")
    with sock:
        assert get(sock, "a.example.com")[0] == 200
    assert not tls_router.log_events("router_bug", wait=0.5)


def test_broken_pairs_skipped_with_a_log_line(tmp_path, ca, upstreams, start_router):
    data = tmp_path / "broken"
    store(data, ca, "a.example.com")
    tlsstore.save(data, "b.example.com", b"-----BEGIN CERTIFICATE-----\nnope\n", b"garbage")
    other_chain, _, _ = ca.issue("open.example.com")
    _, wrong_key, _ = ca.issue("open.example.com")
    tlsstore.save(data, "open.example.com", other_chain, wrong_key)
    router = start_router(table(upstreams("a")), data=data, args=("--https-port", "0"))
    skipped = router.log_events("certificate_skipped")
    assert any("b.example.com" in line for line in skipped)
    assert any("open.example.com" in line for line in skipped)
    sock, _ = handshake(router, ca, "a.example.com")
    with sock:
        assert get(sock, "a.example.com")[0] == 200
    # no certificate loaded: no redirect either
    assert router.request("b.example.com")[0] == 200


def test_reload_new_certificate_for_new_connections_old_connection_kept(tls_router, ca):
    old, old_der = handshake(tls_router, ca, "a.example.com")
    with old:
        assert get(old, "a.example.com")[0] == 200
        renewed = store(tls_router.data, ca, "a.example.com")
        assert tls_router.control({"op": "reload"}) == {"ok": True, "version": 1}
        sock, der = handshake(tls_router, ca, "a.example.com")
        with sock:
            assert serial_of(der) == renewed.serial_number != serial_of(old_der)
            assert get(sock, "a.example.com")[0] == 200
        # the open keep-alive connection goes on
        assert get(old, "a.example.com")[0] == 200
        assert get(old, "a.example.com")[0] == 200
    # a certificate for a new name, and reload even when routes.json cannot be read
    store(tls_router.data, ca, "c.example.com")
    (tls_router.run_dir / "routes.json").write_text("{broken")
    assert tls_router.control({"op": "reload"})["ok"] is False
    sock, _ = handshake(tls_router, ca, "c.example.com")
    sock.close()


def test_a_pair_broken_after_loading_keeps_the_certificate_served(tls_router, ca):
    _, der = handshake(tls_router, ca, "b.example.com")
    where = tlsstore.directory(tls_router.data, "b.example.com")
    # the key of a renewal written, its certificate not yet (or never)
    _, new_key, _ = ca.issue("b.example.com")
    (where / "key.pem").write_bytes(new_key)
    assert tls_router.control({"op": "reload"})["ok"] is True
    assert tls_router.log_events("certificate_skipped", "b.example.com")
    sock, again = handshake(tls_router, ca, "b.example.com")
    with sock:
        assert again == der and get(sock, "b.example.com")[0] == 200
    assert tls_router.request("b.example.com")[0] == 308       # still redirected
    # the name removed from the store: no longer served
    tlsstore.remove(tls_router.data, "b.example.com")
    tls_router.control({"op": "reload"})
    assert tls_router.request("b.example.com")[0] == 200


def test_kill_9_restart_serves_https_at_once(tls_router, ca):
    sock, der = handshake(tls_router, ca, "b.example.com")
    sock.close()
    tls_router.stop(signal.SIGKILL)
    tls_router.start()
    sock, again = handshake(tls_router, ca, "b.example.com")
    with sock:
        assert again == der and get(sock, "b.example.com")[0] == 200


def test_metrics_gauge_seconds_until_expiry(tmp_path, ca, upstreams, start_router):
    data = tmp_path / "m"
    store(data, ca, "a.example.com", days=10)
    store(data, ca, "b.example.com", expired=True)
    router = start_router(table(upstreams("a")), data=data, args=("--https-port", "0"))
    status, body = router.admin_get("/metrics")
    values = {line.split('"')[1]: float(line.split()[-1]) for line in body.decode().splitlines()
              if line.startswith("dotcloud_router_certificate_expiry_seconds{")}
    assert 9 * 86400 < values["a.example.com"] <= 10 * 86400
    assert values["b.example.com"] < 0
    # an expired certificate does not redirect (HTTPS could not be trusted)
    assert router.request("b.example.com")[0] == 200
    assert router.request("a.example.com")[0] == 308


def test_many_parallel_tls_clients(tls_router, ca):
    failures = []

    def client(i):
        try:
            name = NAMES[i % 2]
            sock, _ = handshake(tls_router, ca, name)
            with sock:
                for _ in range(5):
                    assert get(sock, name)[0] == 200
        except Exception as exc:        # collected: the assertion below reports them
            failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    time.sleep(0)


def test_redirect_location_and_page():
    from router import pages
    from router.router import https_location
    assert https_location("shop.example.com", 443, b"/a?b=1") == "https://shop.example.com/a?b=1"
    assert https_location("shop.example.com", 8443, b"/") == "https://shop.example.com:8443/"
    page = pages.redirect("https://x.example.com/<p>", keep_alive=True)
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://x.example.com/<p>")
    assert b"Connection: close" not in head and b"&lt;p&gt;" in body
    assert b"Connection: close" in pages.redirect("https://x/", keep_alive=False)


def test_a_certificate_expiring_while_served_ends_the_redirect(tmp_path, ca, upstreams,
                                                               start_router):
    data = tmp_path / "expiring"
    leaf = store(data, ca, "a.example.com", days=5 / 86400)        # five seconds from now
    store(data, ca, "b.example.com")
    router = start_router(table(upstreams("a")), data=data, args=("--https-port", "0"))
    status = router.request("a.example.com")[0]
    if time.time() < leaf.not_valid_after_utc.timestamp() - 1:
        assert status == 308            # (a machine too slow to start it in time skips this)
    deadline = time.monotonic() + 30
    while router.request("a.example.com")[0] == 308:         # until it expires
        assert time.monotonic() < deadline, "the redirect outlived the certificate"
        time.sleep(0.2)
    assert router.request("a.example.com")[0] == 200
    assert router.request("b.example.com")[0] == 308          # the others unchanged
    # the expired one is still what the name is served (clients decide), never a crash
    raw = socket.create_connection(("127.0.0.1", router.https_port), timeout=10)
    ctx = ca.client_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(raw, server_hostname="a.example.com") as sock:
        assert get(sock, "a.example.com")[0] == 200


def test_certificates_replaced_under_load_lose_no_request(tls_router, ca):
    failures, served = [], []
    stop = threading.Event()

    def keep_alive():
        try:
            sock, _ = handshake(tls_router, ca, "a.example.com")
            with sock:
                while not stop.is_set():
                    assert get(sock, "a.example.com")[0] == 200
                    served.append(1)
        except Exception as exc:        # collected: the assertion below reports them
            failures.append(repr(exc))

    def new_connections():
        try:
            while not stop.is_set():
                sock, _ = handshake(tls_router, ca, "a.example.com")
                with sock:
                    assert get(sock, "a.example.com")[0] == 200
                    served.append(1)
        except Exception as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=f) for f in (keep_alive, keep_alive, new_connections,
                                                    new_connections)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            leaf = store(tls_router.data, ca, "a.example.com")
            assert tls_router.control({"op": "reload"})["ok"] is True
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == [] and len(served) > 10
    assert serial_of(handshake(tls_router, ca, "a.example.com")[1]) == leaf.serial_number
