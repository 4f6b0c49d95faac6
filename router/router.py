"""The Router: the current route table, the targets, and the routing of a request.

It owns one reference to an immutable RouteTable (a swap replaces it), the
Targets registry that outlives swaps, the metrics, and the set of client
connections. It decides where a request goes and records what happened; it
never writes routes.json (the deployer does) and never blocks the loop.
"""
from __future__ import annotations

import asyncio
from time import monotonic, time

from dotcloud.datadir import DataDir

from . import headers, table as tables
from .accesslog import AccessLog
from .challenges import PREFIX as CHALLENGE_PREFIX, Challenges
from .exchange import Exchange
from .metrics import Metrics
from .settings import Settings
from .targets import Targets

NO_APP = "-"
KNOWN_REQUESTS = 1024        # requests remembered (the memo is dropped whole when full)
KNOWN_REQUEST_MAX = 4096     # bytes: longer requests are not remembered
ACME_CHALLENGE = b"/.well-known/acme-challenge/"
HSTS = b"Strict-Transport-Security: max-age=31536000\r\n"   # one year, this name only
_UNSEEN = object()


class Router:
    def __init__(self, settings: Settings, paths: DataDir, loop, log):
        self.settings = settings
        self.routes_path = paths.routes
        self.loop = loop
        self.log = log
        self.table = tables.EMPTY
        self.targets = Targets(settings, clock=monotonic)
        self.metrics = Metrics()
        self.connections = set()
        self.request_ids = headers.RequestIds()
        self.challenges = Challenges(paths.challenges)
        self.response_heads = headers.ResponseHeads()
        self.hsts_heads = headers.ResponseHeads(extra=HSTS)
        self.access_log = AccessLog(loop=loop) if settings.access_log else None
        self._hosts = {}
        self.known = {}       # (request bytes, client address) -> what remember_request kept
        self.known_tls = {}   # the same for requests over TLS (their heads say https)
        self._single = {}     # host -> (route, target) of this table's one-instance routes
        self._single_tls = {}  # the same for redirected hosts, which only TLS reaches
        self._ticker = None
        # HTTPS (router/tls.py): set by main when it listens for TLS
        self.certs = None
        self.https_port = 0
        self.domain = "localhost"
        self.redirects = frozenset()   # hosts whose plain HTTP requests get a 308 to https
        self._redirect_at = float("inf")

    # -- the table ---------------------------------------------------------

    def load(self) -> tables.RouteTable:
        """Read routes.json and swap it in; TableError leaves the old table."""
        table = tables.load(self.routes_path)
        self.swap(table)
        return table

    def swap(self, table: tables.RouteTable) -> None:
        old, self.table = self.table, table
        self._single = {}
        self._single_tls = {}
        self.targets.retire(table)
        self.update_redirects()
        self.log.info("routes_swapped", version=table.version, routes=len(table.routes),
                      previous=old.version)

    # -- certificates ------------------------------------------------------

    def load_certificates(self) -> None:
        """Read DATA/tls (and the platform's pair) again; new handshakes use them."""
        if self.certs is not None:
            self.certs.load()
            self.update_redirects()

    def update_redirects(self) -> None:
        """Hosts with a certificate that has not expired, unless added with
        --allow-http, get their plain HTTP redirected (recomputed on a swap, a
        certificate load, and when a certificate expires)."""
        certs = self.certs
        if certs is None:
            return
        routes = self.table.routes
        hosts = [h for h, r in routes.items() if not r.allow_http]
        self.redirects = frozenset(certs.valid_names(self.domain, hosts))
        self._redirect_at = certs.next_expiry()
        self._single = {}
        self._single_tls = {}

    # -- routing -----------------------------------------------------------

    def open_exchange(self, client, method: bytes, url: bytes, header_list: list,
                      http11: bool, keep_alive: bool, upgrading: bool,
                      begin: float) -> Exchange:
        """Route one request whose head has arrived; errors become error exchanges."""
        if url.startswith(CHALLENGE_PREFIX) and not upgrading:
            # HTTP-01 before routing and redirects: any Host, routed or not
            answer = self.challenges.exchange(client, method, url, keep_alive, http11, begin)
            if answer is not None:
                return answer
        if url[:1] != b"/" or upgrading:
            # llhttp takes any CONNECT for an upgrade, whatever its target
            if method == b"CONNECT":
                return Exchange(client, method, url, None, keep_alive, http11, begin,
                                error=405, detail="CONNECT is not supported")
        if url[:1] != b"/":
            url, problem = _origin_form(method, url, header_list)
            if problem:
                return Exchange(client, method, url, None, keep_alive, http11, begin,
                                error=400, detail=problem)
        try:
            req = headers.rewrite_request(method, url, header_list, client.client_ip,
                                          self.settings.trusted_proxies, upgrading,
                                          self.request_ids, client.proto)
        except headers.BadRequest as exc:
            return Exchange(client, method, url, None, keep_alive, http11, begin,
                            error=exc.args[0], detail=exc.args[1])
        return self._route(client, method, url, req, keep_alive, http11, begin)

    def _route(self, client, method: bytes, url: bytes, req: headers.RequestHead,
               keep_alive: bool, http11: bool, begin: float) -> Exchange:
        host = self._hosts.get(req.host, _UNSEEN)
        if host is _UNSEEN:
            host = self._normalize(req.host)
        if host is None:
            return Exchange(client, method, url, None, keep_alive, http11, begin,
                            error=400, detail="invalid Host header")
        return self._route_host(client, method, url, req, keep_alive, http11, begin, host)

    def _route_host(self, client, method: bytes, url: bytes, req: headers.RequestHead,
                    keep_alive: bool, http11: bool, begin: float, host: str) -> Exchange:
        single = self._single.get(host)
        if single is None:
            if host in self.redirects:
                if not client.secure:
                    if not url.startswith(ACME_CHALLENGE):
                        return self._redirect(client, method, url, req, keep_alive, http11,
                                              begin, host)
                    # the ACME challenge path: routed as usual, never remembered
                    return self._route_table(client, method, url, req, keep_alive, http11,
                                             begin, host, None)
                # over TLS: remembered apart, plain requests must not find it
                single = self._single_tls.get(host)
                if single is None:
                    return self._route_table(client, method, url, req, keep_alive, http11,
                                             begin, host, self._single_tls)
            else:
                return self._route_table(client, method, url, req, keep_alive, http11,
                                         begin, host, self._single)
        route, target = single
        target.in_flight += 1
        return Exchange(client, method, url, req, keep_alive, http11, begin, route, target)

    def _route_table(self, client, method, url, req, keep_alive, http11, begin, host,
                     remember: dict | None) -> Exchange:
        """Route by the table; a single-instance route goes into `remember`, if given."""
        route = self.table.routes.get(host)
        if route is None:
            return Exchange(client, method, url, req, keep_alive, http11, begin, error=404)
        if not route.backends:
            return Exchange(client, method, url, req, keep_alive, http11, begin, route,
                            error=503)
        target = self.targets.pick(route)
        if remember is not None and len(route.backends) == 1:
            # no choice to make until the next swap, which forgets this
            remember[host] = (route, target)
        target.in_flight += 1
        return Exchange(client, method, url, req, keep_alive, http11, begin, route, target)

    def _redirect(self, client, method, url, req, keep_alive, http11, begin, host):
        return Exchange(client, method, url, req, keep_alive, http11, begin,
                        self.table.routes.get(host), error=308,
                        detail=https_location(host, self.https_port, url))

    # -- requests seen before ----------------------------------------------
    # A client repeats its requests byte for byte (same path, same headers);
    # what the parser and rewrite_request made of one is remembered under its
    # bytes and the client's address, so a repeat skips both. Only whole
    # requests without a body or an upgrade that were routed are remembered.

    def remember_request(self, raw: bytes, ex: Exchange) -> None:
        req = ex.req
        if (len(raw) > KNOWN_REQUEST_MAX or ex.error or req.has_body or req.upgrade
                or req.chunked or ex.route is None):
            return
        known = self.known
        if len(known) >= KNOWN_REQUESTS:
            known.clear()
        # the normalized host, not the route: the route is looked up each time
        host = self._hosts.get(req.host) or self._normalize(req.host)
        if ex.client.secure:
            known = self.known_tls
            if len(known) >= KNOWN_REQUESTS:
                known.clear()
        known[(raw, ex.client.client_ip)] = (ex.method, ex.url, req, ex.keep_alive, ex.http11,
                                             host, self.request_ids.base(req))

    def open_known(self, client, known, begin: float) -> Exchange:
        """Route a repeat of a request remembered by remember_request."""
        method, url, req, keep_alive, http11, host, id_base = known
        ex = self._route_host(client, method, url, req, keep_alive, http11, begin, host)
        if id_base is not None:
            ex.head = self.request_ids.renew(id_base)
        return ex

    def _normalize(self, raw: bytes):
        """Host header -> table key, remembered (a bounded cache of pure results)."""
        hosts = self._hosts
        if len(hosts) >= 4096:
            hosts.clear()
        host = hosts[raw] = tables.normalize_host(raw)
        return host

    # -- reporting ---------------------------------------------------------

    def record(self, ex: Exchange, now: float = 0.0) -> None:
        route = ex.route
        app = route.app if route is not None else NO_APP
        duration = (now or monotonic()) - ex.begin
        self.metrics.observe(app, ex.status, duration)
        if self.access_log is not None:
            req = ex.req
            self.access_log.request(
                app, route.service if route is not None else NO_APP,
                _instance(route, ex.target), ex.method, ex.url, ex.client.client_ip,
                ex.status, ex.bytes_out, int(duration * 100000 + 0.5) / 100,   # ms, 2 decimals
                _request_id(req, ex.head), ex.detail or None)

    def rejected(self, client, status: int, detail: str) -> None:
        self.metrics.observe(NO_APP, status, 0.0)
        self.log.info("request_rejected", status=status, detail=detail,
                      client=client.client_ip.decode())

    def upstream_failed(self, target, reason: str) -> None:
        self.log.warning("upstream_failed", backend=f"{target.host}:{target.port}",
                         reason=reason)

    # -- housekeeping ------------------------------------------------------

    def start_clock(self) -> None:
        s = self.settings
        period = min(1.0, s.header_timeout / 4, s.idle_timeout / 4, s.first_byte_timeout / 4,
                     s.keepalive_timeout / 4)
        self._ticker = self.loop.create_task(self._clock(max(period, 0.05)))

    async def _clock(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            now = monotonic()
            for conn in list(self.connections):
                try:
                    conn.check(now)
                except Exception:
                    self.log.exception("router_bug", where="timeout_check")
            self.targets.sweep()
            self.metrics.fold()
            if self._redirect_at <= time():
                self.update_redirects()     # a certificate expired: its host is plain again
            self.flush_log()

    def flush_log(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()

    def stop_clock(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.flush_log()

    def in_flight_total(self) -> int:
        return sum(t.in_flight for t in self.targets.all())

    async def drain(self, keys: set, timeout: float) -> tuple[bool, int]:
        """Wait until no request is in flight to these backends, up to timeout."""
        for key in keys:
            target = self.targets.find(key)
            if target is not None:
                target.close_idle()
        deadline = monotonic() + timeout
        while True:
            count = sum(t.in_flight for k in keys if (t := self.targets.find(k)) is not None)
            if count == 0 or monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        for key in keys:
            target = self.targets.find(key)
            if target is not None:
                target.close_idle()
        return count == 0, count


def https_location(host: str, port: int, url: bytes) -> str:
    """Where a plain HTTP request goes over HTTPS (no port when it is 443)."""
    authority = host if port == 443 else f"{host}:{port}"
    return f"https://{authority}{url.decode('latin-1')}"


def _request_id(req, head: bytes | None) -> bytes | None:
    if req is None:
        return None
    if head is req.head:
        return req.request_id
    return headers.RequestIds.id_in(head)      # a repeat's head, with an id of its own


def _instance(route, target) -> str | None:
    if target is None:
        return None
    for backend in route.backends:
        if backend.host == target.host and backend.port == target.port:
            return backend.id
    return f"{target.host}:{target.port}"


def _origin_form(method: bytes, url: bytes, header_list: list) -> tuple[bytes, str]:
    """Absolute-form targets must name the Host they carry; '*' only for OPTIONS."""
    if url == b"*":
        return url, "" if method == b"OPTIONS" else "'*' is only valid for OPTIONS"
    lowered = url.lower()
    for scheme in (b"http://", b"https://"):
        if lowered.startswith(scheme):
            rest = url[len(scheme):]
            authority, slash, path = rest.partition(b"/")
            host = next((v for n, v in header_list if n.lower() == b"host"), None)
            if host is None or tables.normalize_host(host) != tables.normalize_host(authority):
                return url, "the request target names another host than the Host header"
            return b"/" + path, ""
    return url, "invalid request target"
