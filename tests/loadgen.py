"""A load generator for tests: client threads hammering one app through the
router while something is killed, deployed or restarted, counting every
request that did not get a good answer.

    with Load(platform.http_port, "myapp.localhost", clients=6) as load:
        load.wait_ok(20)            # the app answers before we disturb it
        ...kill something, push, scale...
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) <= {"v1", "v2"}

Half the clients (rounded up) keep one keep-alive connection open, the others
open a fresh connection for every request, so both the router's accepting
path and its keep-alive path are exercised. A request is good when it gets a
2xx or 3xx status; anything else (an error status, a refused or reset
connection, a timeout) is a failure, recorded with when it happened and why.
Keep-alive clients reconnect after a failure and never retry a request.

It must never hide a failure: no retries, no status it does not count.
"""
import http.client
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

BODY_CHARS = 200
KEEP_ERRORS = 200


@dataclass(frozen=True)
class Failure:
    at: float        # time.monotonic() when the request ended
    client: int
    keepalive: bool
    error: str       # "status 502" or the exception


class Load:
    def __init__(self, port: int, host: str, clients: int = 6, path: str = "/",
                 keepalive: int | None = None, pause: float = 0.002, timeout: float = 10.0,
                 address: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
        self.address = address
        self.tls = tls             # HTTPS with this context, SNI and checks for `host`
        self.port = port
        self.host = host
        self.path = path
        self.clients = clients
        self.keepalive = (clients + 1) // 2 if keepalive is None else keepalive
        self.pause = pause
        self.timeout = timeout
        self.ok = 0
        self.failures = 0
        self.bodies: Counter = Counter()
        self.statuses: Counter = Counter()
        self.errors: list[Failure] = []
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.last_ok_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- running ---------------------------------------------------------

    def __enter__(self) -> "Load":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.started_at = time.monotonic()
        for n in range(self.clients):
            t = threading.Thread(target=self._client, args=(n, n < self.keepalive),
                                 name=f"load-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        self.stopped_at = time.monotonic()

    # -- reading the results ---------------------------------------------

    @property
    def total(self) -> int:
        return self.ok + self.failures

    def counts(self) -> tuple[int, int]:
        """(ok, failures) at this moment."""
        with self._lock:
            return self.ok, self.failures

    def wait_ok(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until `count` more requests than now have succeeded."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load: {self.ok} good requests, wanted {target}; "
                                     f"errors: {self.summary()}")
            time.sleep(0.01)

    def summary(self) -> str:
        kinds = Counter(f.error for f in self.errors)
        return (f"{self.ok} ok, {self.failures} failed"
                + (f" ({', '.join(f'{k} x{n}' for k, n in kinds.most_common(5))})"
                   if kinds else ""))

    # -- one client ------------------------------------------------------

    def _client(self, number: int, keepalive: bool) -> None:
        conn = None
        headers = {"Host": self.host}
        if not keepalive:
            headers["Connection"] = "close"
        while not self._stop.is_set():
            if conn is None:
                conn = (http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
                        if self.tls is None else
                        _TLSConnection(self.address, self.port, self.host, self.tls,
                                       self.timeout))
            try:
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                error = None if 200 <= resp.status < 400 else f"status {resp.status}"
                if not keepalive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"[:120]
                conn.close()
                conn = None
                resp = None
            self._record(number, keepalive, resp, body if error is None else b"", error)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def _record(self, number: int, keepalive: bool, resp, body: bytes, error: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            if resp is not None:
                self.statuses[resp.status] += 1
            if error is None:
                self.ok += 1
                self.last_ok_at = now
                self.bodies[body[:BODY_CHARS].decode("utf-8", "replace")] += 1
            else:
                self.failures += 1
                if len(self.errors) < KEEP_ERRORS:
                    self.errors.append(Failure(now, number, keepalive, error))


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to an address, with SNI and the certificate checked for another name."""

    def __init__(self, address: str, port: int, name: str, context: ssl.SSLContext,
                 timeout: float):
        super().__init__(address, port, timeout=timeout, context=context)
        self.name = name

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.name)
