"""The few Engine API calls an instance's launcher makes, spoken directly.

The docker SDK takes 0.1-0.3 s to import (requests and urllib3, measured
here), and every instance start pays it in runtime.docker_launcher, which is
a process of its own per instance process: a push goes live that much
later, and a crashed instance comes back that much later. These calls
(remove, create, attach with stdin or not, start, wait, inspect, exec,
stop) need only http.client on the engine's socket: `DOCKER_HOST` as
unix://PATH (the default, /var/run/docker.sock) or tcp://HOST:PORT without
TLS. Everything else of the platform uses the SDK (runtime.docker_engine).

Errors are EngineError with the engine's own message. This module never
decides anything: it is an API client.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import urllib.parse
from typing import Iterator

API = "/v1.41"      # docker 20.10's: every engine since understands it
DEFAULT_SOCKET = "/var/run/docker.sock"
HEADER = struct.Struct(">BxxxL")    # stream (1 stdout, 2 stderr), length
READ_SIZE = 65536


class EngineError(Exception):
    """The engine refused a call or cannot be reached; says which and why."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Engine:
    def __init__(self, address: str):
        self.address = address

    @classmethod
    def from_env(cls) -> "Engine":
        host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        if os.environ.get("DOCKER_TLS_VERIFY"):
            raise EngineError("the instance launcher speaks to engines without TLS only "
                              "(DOCKER_TLS_VERIFY is set)")
        if not host.startswith(("unix://", "tcp://")):
            raise EngineError(f"the instance launcher cannot reach DOCKER_HOST={host} "
                              "(unix:// and tcp:// only)")
        return cls(host)

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.address.startswith("unix://"):
            return _UnixConnection(self.address[len("unix://"):], timeout)
        hostport = urllib.parse.urlsplit(self.address).netloc
        return http.client.HTTPConnection(hostport, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None,
             timeout: float | None = 60.0, ok: tuple[int, ...] = (200, 201, 204)):
        """One request; the decoded JSON answer (None when empty). EngineError
        with the engine's message for a status not in `ok`."""
        conn = self._connection(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, API + path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise EngineError(f"the docker engine is not reachable at {self.address} "
                              f"({e})") from None
        finally:
            conn.close()
        if response.status not in ok:
            try:
                message = json.loads(raw).get("message", "")
            except ValueError:
                message = raw.decode("utf-8", "replace").strip()
            raise EngineError(f"{response.status} {message or response.reason}",
                              response.status)
        return json.loads(raw) if raw.strip() else None

    # -- containers ----------------------------------------------------------

    def remove(self, name: str) -> bool:
        """Remove the container whatever its state; True if there was one."""
        try:
            self.call("DELETE", f"/containers/{_q(name)}?force=1")
        except EngineError as e:
            if e.status == 404:
                return False
            if e.status == 409:     # already being removed
                return True
            raise
        return True

    def create(self, name: str, config: dict) -> str:
        return self.call("POST", f"/containers/create?name={_q(name)}", config)["Id"]

    def start(self, container: str) -> None:
        self.call("POST", f"/containers/{container}/start", ok=(204, 304))

    def wait(self, container: str) -> int:
        """Block until the container exits; its exit status."""
        return int(self.call("POST", f"/containers/{container}/wait",
                             timeout=None)["StatusCode"])

    def inspect(self, container: str) -> dict:
        return self.call("GET", f"/containers/{container}/json")

    def stop(self, container: str, grace: int) -> None:
        self.call("POST", f"/containers/{container}/stop?t={grace}", timeout=grace + 60,
                  ok=(204, 304))

    def exec_detached(self, container: str, argv: list[str], user: str) -> None:
        exec_id = self.call("POST", f"/containers/{container}/exec",
                            {"Cmd": argv, "User": user, "AttachStdout": False,
                             "AttachStderr": False})["Id"]
        self.call("POST", f"/exec/{exec_id}/start", {"Detach": True, "Tty": False})

    def attach(self, container: str, stdin: bool = False) -> "Attached":
        """The container's output as (1 or 2, bytes) frames from now on, until it
        ends (iterate the answer); attach before the start so nothing is missed.
        With `stdin`, what is written to the answer goes to the container's
        stdin (a container created with OpenStdin and StdinOnce)."""
        conn = self._connection(None)
        try:
            conn.connect()
            sock = conn.sock
            sock.sendall((f"POST {API}/containers/{container}/attach?stream=1&stdout=1"
                          f"&stderr=1{'&stdin=1' if stdin else ''} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                          "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n").encode())
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(READ_SIZE)
                if not chunk:
                    raise EngineError("the engine closed the attach connection")
                buffer += chunk
        except OSError as e:
            conn.close()
            raise EngineError(f"the docker engine is not reachable at {self.address} "
                              f"({e})") from None
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status = head.split(b" ", 2)[1:2]
        if status not in ([b"101"], [b"200"]):
            conn.close()
            raise EngineError(f"attach refused: {head.splitlines()[0].decode('latin-1')}")
        return Attached(conn, buffer)


class Attached:
    """An attached container: its output frames when iterated (once), and its stdin."""

    def __init__(self, conn, buffer: bytes):
        self.conn = conn
        self.buffer = buffer

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return _frames(self.conn, self.buffer)

    def write(self, data: bytes) -> None:
        self.conn.sock.sendall(data)

    def close_stdin(self) -> None:
        """End of input: the engine closes the container's stdin (StdinOnce)."""
        self.conn.sock.shutdown(socket.SHUT_WR)


def _frames(conn, buffer: bytes) -> Iterator[tuple[int, bytes]]:
    sock = conn.sock
    try:
        while True:
            while len(buffer) >= HEADER.size:
                stream, size = HEADER.unpack_from(buffer)
                if len(buffer) < HEADER.size + size:
                    break
                yield (2 if stream == 2 else 1), buffer[HEADER.size:HEADER.size + size]
                buffer = buffer[HEADER.size + size:]
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                return
            buffer += chunk
    finally:
        conn.close()


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")
