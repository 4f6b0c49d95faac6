"""Unit tests of the router's pure parts: table, host keys, head rewriting, balancing."""
import random

import pytest

from dotcloud.errors import UsageError
from router import headers, pages, table
from router.metrics import BUCKETS, Metrics
from router.settings import Settings
from router.targets import Targets


def doc(**routes):
    return {"version": 3, "routes": routes}


def route(*ports, app="hello", service="www"):
    return {"app": app, "service": service,
            "backends": [{"id": f"{app}.{service}.{i}", "host": "127.0.0.1", "port": p}
                         for i, p in enumerate(ports)]}


# -- table -------------------------------------------------------------------

@pytest.mark.parametrize("raw,key", [
    (b"hello.localhost", "hello.localhost"), (b"Hello.LocalHost:8080", "hello.localhost"),
    (b"hello.localhost.", "hello.localhost"), (b" hello.localhost ", "hello.localhost"),
    (b"[::1]:8080", "[::1]"), (b"127.0.0.1:80", "127.0.0.1"),
    (b"", None), (b"a b", None), (b"a/b", None), (b"a..b", None), (b"host:port", None),
    (b"host:99999999", None), (b"[::1", None), (b"\xff.example", None), (b"a:", None),
])
def test_normalize_host(raw, key):
    assert table.normalize_host(raw) == key


def test_parse_builds_an_immutable_table():
    t = table.parse(doc(**{"Hello.LocalHost": route(1, 2), "api.hello.localhost": route()}))
    assert t.version == 3
    assert t.lookup("hello.localhost").backends[1].port == 2
    assert t.lookup("api.hello.localhost").backends == ()
    assert t.lookup("nope") is None
    with pytest.raises(TypeError):
        t.routes["x"] = None
    with pytest.raises(AttributeError):
        t.version = 4
    assert t.backend_keys() == {("127.0.0.1", 1), ("127.0.0.1", 2)}


@pytest.mark.parametrize("bad", [
    [], {"version": "7", "routes": {}}, {"version": True, "routes": {}}, {"routes": []},
    doc(**{"bad host!": route(1)}), doc(h="not an object"), doc(h={"app": 1, "service": "w"}),
    doc(h={"app": "a", "service": "w", "backends": {}}),
    doc(h={"app": "a", "service": "w", "backends": ["x"]}),
    doc(h={"app": "a", "service": "w", "backends": [{"host": "127.0.0.1", "port": 0}]}),
    doc(h={"app": "a", "service": "w", "backends": [{"host": "127.0.0.1", "port": "80"}]}),
    doc(h={"app": "a", "service": "w", "backends": [{"host": "", "port": 80}]}),
])
def test_parse_refuses_malformed_tables(bad):
    with pytest.raises(table.TableError):
        table.parse(bad)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(table.TableError, match="not found"):
        table.load(tmp_path / "routes.json")
    (tmp_path / "routes.json").write_text("{")
    with pytest.raises(table.TableError, match="unreadable"):
        table.load(tmp_path / "routes.json")


# -- request and response heads ----------------------------------------------

def rewrite(hdrs, ip=b"10.0.0.1", trusted=frozenset(), upgrading=False, method=b"GET"):
    return headers.rewrite_request(method, b"/p?q", hdrs, ip, trusted, upgrading,
                                   headers.RequestIds())


def test_request_head_is_rewritten():
    r = rewrite([(b"Host", b"h"), (b"Content-Length", b"3"), (b"Connection", b"x-a, close"),
                 (b"X-A", b"1"), (b"X-B", b"2"), (b"X-Forwarded-For", b"6.6.6.6")])
    assert r.head.startswith(b"GET /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-B: 2\r\n")
    assert b"X-A" not in r.head and b"6.6.6.6" not in r.head and b"Connection" not in r.head
    assert b"X-Forwarded-For: 10.0.0.1\r\n" in r.head and r.head.endswith(b"\r\n\r\n")
    assert r.has_body and not r.chunked and r.upgrade is None


def test_request_chunked_and_upgrade():
    r = rewrite([(b"Host", b"h"), (b"Transfer-Encoding", b"Chunked")])
    assert r.chunked and b"Transfer-Encoding: chunked\r\n" in r.head
    r = rewrite([(b"Host", b"h"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")],
                upgrading=True)
    assert r.upgrade == b"websocket"
    assert b"Connection: Upgrade\r\nUpgrade: websocket\r\n" in r.head
    # an Upgrade header without Connection: upgrade is dropped as hop-by-hop
    r = rewrite([(b"Host", b"h"), (b"Upgrade", b"h2c")])
    assert r.upgrade is None and b"h2c" not in r.head


@pytest.mark.parametrize("hdrs,reason", [
    ([], "missing Host"), ([(b"Host", b"a"), (b"host", b"b")], "more than one Host"),
    ([(b"Host", b"a"), (b"Transfer-Encoding", b"gzip, chunked")], "Transfer-Encoding"),
    ([(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
     "Transfer-Encoding"),
])
def test_request_heads_refused(hdrs, reason):
    with pytest.raises(headers.BadRequest) as exc:
        rewrite(hdrs)
    assert exc.value.args[0] == 400 and reason in exc.value.args[1]


def test_trusted_proxy_headers_and_request_ids():
    r = rewrite([(b"Host", b"h"), (b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-Proto", b"https"),
                 (b"X-Request-Id", b"bad id with spaces")], trusted=frozenset({b"10.0.0.1"}))
    assert b"X-Forwarded-For: 1.1.1.1, 10.0.0.1\r\n" in r.head
    assert b"X-Forwarded-Proto: https\r\n" in r.head
    assert r.request_id != b"bad id with spaces" and b"bad id" not in r.head
    ids = headers.RequestIds()
    assert len({ids() for _ in range(1000)}) == 1000


def respond(head, status=200, **kw):
    kw = {"head_request": False, "client_http11": True, "keep_alive": True, **kw}
    return headers.rewrite_response(status, head, **kw)


def test_response_framing_choices():
    length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
    r = respond(length)
    assert (r.mode, r.keep_alive, r.until_close) == (headers.LENGTH, True, False)
    assert r.head == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    eof = b"HTTP/1.0 200 OK\r\nServer: s\r\n\r\n"
    r = respond(eof)
    assert r.mode == headers.CHUNKED and r.until_close
    assert r.head == b"HTTP/1.1 200 OK\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n"
    r = respond(eof, client_http11=False)
    assert r.mode == headers.UNTIL_CLOSE and not r.keep_alive
    assert r.head.endswith(b"Connection: close\r\n\r\n")
    both = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"
    r = respond(both)
    assert r.mode == headers.CHUNKED and not r.until_close and b"Content-Length" not in r.head
    r = respond(length, head_request=True)
    assert r.mode == headers.NO_BODY and b"Content-Length: 5" in r.head
    r = respond(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", status=204)
    assert r.mode == headers.NO_BODY and b"Content-Length" not in r.head
    r = respond(length, client_http11=False)
    assert r.head.endswith(b"Connection: keep-alive\r\n\r\n")


def test_response_hop_by_hop_removed_but_upgrade_kept_for_101():
    head = (b"HTTP/1.1 200 OK\r\nCONNECTION: close, X-Secret\r\nx-secret: s\r\nKeep-Alive: 5\r\n"
            b"Proxy-Authenticate: Basic\r\nTrailer: x\r\nX-Ok: 1\r\nContent-Length: 0\r\n\r\n")
    assert respond(head).head == b"HTTP/1.1 200 OK\r\nX-Ok: 1\r\nContent-Length: 0\r\n\r\n"
    up = respond(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Keep-Alive: 1\r\n\r\n", status=101)
    assert up.head == (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                       b"Upgrade: websocket\r\n\r\n")
    assert headers.interim_head(b"HTTP/1.1 103 Early Hints\r\nLink: l\r\nConnection: x\r\n\r\n") == \
        b"HTTP/1.1 103 Early Hints\r\nLink: l\r\n\r\n"


# -- balancing ---------------------------------------------------------------

class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_round_robin_and_passive_health():
    clock = Clock()
    targets = Targets(Settings(), clock=clock)
    r = table.parse(doc(h=route(1, 2, 3))).lookup("h")
    assert [targets.pick(r).port for _ in range(6)] == [1, 2, 3, 1, 2, 3]
    targets.get(r.backends[1]).mark_down(clock.now, 5)
    assert {targets.pick(r).port for _ in range(6)} == {1, 3}
    assert targets.pick(r, tried={("127.0.0.1", 1), ("127.0.0.1", 3)}).port == 2
    assert targets.pick(r, tried={("127.0.0.1", p) for p in (1, 2, 3)}) is None
    clock.now += 6
    assert {targets.pick(r).port for _ in range(6)} == {1, 2, 3}
    for b in r.backends:
        targets.get(b).mark_down(clock.now, 5)
    # all down: still try one (the one back soonest) rather than refuse outright
    assert targets.pick(r) is not None


def test_least_connections():
    targets = Targets(Settings(balance="least_conn"), clock=Clock())
    r = table.parse(doc(h=route(1, 2))).lookup("h")
    targets.get(r.backends[0]).in_flight = 3
    assert {targets.pick(r).port for _ in range(4)} == {2}


def test_targets_kept_across_swaps_and_retired_when_unused():
    targets = Targets(Settings(), clock=Clock())
    old = table.parse(doc(h=route(1, 2)))
    t1 = targets.get(old.lookup("h").backends[0])
    t2 = targets.get(old.lookup("h").backends[1])
    t2.in_flight = 1
    new = table.parse({"version": 4, "routes": {"h": route(1, 3)}})
    targets.retire(new)
    assert targets.get(new.lookup("h").backends[0]) is t1        # same (host, port): same state
    assert targets.find(("127.0.0.1", 2)) is t2                  # still busy: kept
    t2.in_flight = 0
    targets.retire(new)
    assert targets.find(("127.0.0.1", 2)) is None


# -- settings, metrics, pages ------------------------------------------------

def test_settings_from_environment():
    s = Settings.from_env({"DOTCLOUD_ROUTER_CONNECT_TIMEOUT": "0.5", "DOTCLOUD_ROUTER_MAX_HEADERS": "7",
                           "DOTCLOUD_ROUTER_ACCESS_LOG": "off", "DOTCLOUD_ROUTER_BALANCE": "least_conn",
                           "DOTCLOUD_ROUTER_TRUSTED_PROXIES": "127.0.0.1, ::1"})
    assert (s.connect_timeout, s.max_headers, s.access_log, s.balance) == (0.5, 7, False, "least_conn")
    assert s.trusted_proxies == {b"127.0.0.1", b"::1"}
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("env", [
    {"DOTCLOUD_ROUTER_CONNECT_TIMEOUT": "soon"}, {"DOTCLOUD_ROUTER_CONNECT_TIMEOUT": "-1"},
    {"DOTCLOUD_ROUTER_MAX_HEADERS": "0"}, {"DOTCLOUD_ROUTER_ACCESS_LOG": "maybe"},
    {"DOTCLOUD_ROUTER_BALANCE": "random"}, {"DOTCLOUD_ROUTER_TRUSTED_PROXIES": "example.com"},
])
def test_settings_refuse_bad_values(env):
    with pytest.raises(UsageError, match="DOTCLOUD_ROUTER_"):
        Settings.from_env(env)


def test_metrics_render_prometheus_text():
    m = Metrics()
    m.observe("hello", 200, 0.003)
    m.observe("hello", 502, 0.2)
    m.observe('we"ird', 404, 0.0)
    text = m.render({"dotcloud_router_connections": ("Open connections.", 4)}).decode()
    assert 'dotcloud_router_requests_total{app="hello",code="200"} 1' in text
    assert 'dotcloud_router_errors_total{app="hello"} 1' in text
    assert 'dotcloud_router_request_duration_seconds_bucket{app="hello",le="0.005"} 1' in text
    assert 'dotcloud_router_request_duration_seconds_bucket{app="hello",le="+Inf"} 2' in text
    assert 'app="we\\"ird"' in text
    assert "dotcloud_router_connections 4" in text



def test_metrics_fold_in_bulk_as_if_counted_one_by_one():
    # durations on bucket bounds count in that bucket (le="0.005" includes 0.005),
    # and what arrives between two renders adds to what was rendered before
    rng = random.Random(7)
    durations = [rng.choice(BUCKETS) for _ in range(200)] + [rng.uniform(0, 70) for _ in range(300)]
    m = Metrics()
    for i, seconds in enumerate(durations):
        m.observe("a", 200 if i % 3 else 503, seconds)
        if i == 250:
            m.render()
    text = m.render().decode()
    for bound in BUCKETS:
        want = sum(1 for d in durations if d <= bound)
        assert f'_bucket{{app="a",le="{bound!r}"}} {want}\n' in text
    assert f'_bucket{{app="a",le="+Inf"}} {len(durations)}\n' in text
    assert f'_count{{app="a"}} {len(durations)}\n' in text
    assert f'_sum{{app="a"}} {sum(durations):.6f}\n' in text
    assert f'requests_total{{app="a",code="503"}} {len(durations[::3])}\n' in text
    assert f'errors_total{{app="a"}} {len(durations[::3])}\n' in text

def test_error_pages():
    page = pages.render(503, keep_alive=True)
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: %d" % len(body) in head and b"Connection: close" not in head
    assert b"Connection: close" in pages.render(404)
    assert b"&lt;script&gt;" in pages.render(400, detail="<script>")


def test_a_repeated_request_gets_a_new_id_unless_it_brought_one():
    ids = headers.RequestIds()
    first = rewrite([(b"Host", b"h"), (b"Accept", b"*/*")])
    again = ids.renew(ids.base(first))
    rid = ids.id_in(again)
    assert rid != first.request_id and rid.startswith(ids.prefix)
    assert again == first.head.replace(first.request_id, rid)
    assert again.endswith(b"X-Request-Id: " + rid + b"\r\n\r\n")
    assert ids.id_in(ids.renew(ids.base(first))) not in (rid, first.request_id)
    given = rewrite([(b"Host", b"h"), (b"X-Request-Id", b"mine")])
    assert not given.own_id and ids.base(given) is None
