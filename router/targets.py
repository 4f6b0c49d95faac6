"""Per-instance state that outlives route swaps, and the choice of instance.

A Target is one upstream (host, port): its pool of idle keep-alive
connections, its count of requests in flight, and its passive health (a
connection failure marks it down for a while). Targets are keyed by
(host, port) so a backend present in both the old and the new table keeps
its pool and its counts. This module opens no connections itself and never
decides what a request's route is.
"""
from __future__ import annotations

import time

from .settings import Settings
from .table import Backend, Route, RouteTable


class Target:
    __slots__ = ("key", "host", "port", "idle", "in_flight", "tunnels", "down_until",
                 "failures")

    def __init__(self, key: tuple[str, int]):
        self.key = key
        self.host, self.port = key
        self.idle = []           # UpstreamConnection objects, most recently used last
        self.in_flight = 0
        self.tunnels = 0         # upgraded (WebSocket) connections: not in flight
        self.down_until = 0.0
        self.failures = 0

    def healthy(self, now: float) -> bool:
        return self.down_until <= now

    def mark_down(self, now: float, seconds: float) -> None:
        self.failures += 1
        self.down_until = now + seconds

    def mark_up(self) -> None:
        self.down_until = 0.0

    def take_idle(self, now: float, max_idle_age: float):
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.usable() and now - conn.idle_since < max_idle_age:
                return conn
            conn.close()
        return None

    def forget(self, conn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close_idle(self) -> int:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
        return len(idle)

    def sweep(self, now: float, max_idle_age: float) -> None:
        """Close pooled connections idle for longer than max_idle_age."""
        if self.idle and now - self.idle[0].idle_since >= max_idle_age:
            keep = []
            for conn in self.idle:
                if now - conn.idle_since < max_idle_age:
                    keep.append(conn)
                else:
                    conn.close()
            self.idle = keep


class Targets:
    """All Targets by (host, port), and the load-balancing policy over them."""

    def __init__(self, settings: Settings, clock=time.monotonic):
        self._by_key: dict = {}
        self._rr: dict = {}
        self._settings = settings
        self._least_conn = settings.balance == "least_conn"
        self._clock = clock

    def get(self, backend: Backend) -> Target:
        key = (backend.host, backend.port)
        target = self._by_key.get(key)
        if target is None:
            target = self._by_key[key] = Target(key)
        return target

    def find(self, key) -> Target | None:
        return self._by_key.get(key)

    def all(self) -> list:
        return list(self._by_key.values())

    def pick(self, route: Route, tried=()) -> Target | None:
        """A healthy target of the route not yet tried; an unhealthy one if none is."""
        backends = route.backends
        if len(backends) == 1 and not tried:
            return self.get(backends[0])
        now = self._clock()
        candidates = [t for t in map(self.get, backends) if t.key not in tried]
        if not candidates:
            return None
        healthy = [t for t in candidates if t.down_until <= now]
        pool = healthy or sorted(candidates, key=lambda t: t.down_until)[:1]
        rr_key = (route.app, route.service)
        turn = self._rr.get(rr_key, 0)
        self._rr[rr_key] = turn + 1
        if self._least_conn:
            fewest = min(t.in_flight for t in pool)
            pool = [t for t in pool if t.in_flight == fewest]
        return pool[turn % len(pool)]

    def retire(self, table: RouteTable) -> None:
        """Forget targets no longer routed to once nothing uses them."""
        live = table.backend_keys()
        for key, target in list(self._by_key.items()):
            if key not in live and target.in_flight == 0 and target.tunnels == 0:
                target.close_idle()
                del self._by_key[key]
        self._rr = {k: v for k, v in self._rr.items()
                    if any((r.app, r.service) == k for r in table.routes.values())}

    def sweep(self) -> None:
        now = self._clock()
        for target in self._by_key.values():
            target.sweep(now, self._settings.pool_idle_timeout)

    def in_flight(self) -> dict:
        return {f"{t.host}:{t.port}": t.in_flight for t in self._by_key.values()
                if t.in_flight or t.tunnels}
