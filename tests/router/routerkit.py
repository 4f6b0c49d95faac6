"""Test kit for the router: real upstream servers, the router as a subprocess, clients.

Nothing here imitates the router; the upstreams are small real HTTP/1.1
servers (threaded, keep-alive) whose behaviour is chosen by the request path.
"""
from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from dotcloud import fsutil

ROOT = Path(__file__).resolve().parents[2]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self) -> tuple[int, str, bytes]:
        """Read the request body (length or chunked) streaming: count, sha256, head."""
        digest = hashlib.sha256()
        count = 0
        first = b""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                self.rfile.readline()
                digest.update(data)
                count += len(data)
                first = first or data[:64]
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, 1 << 16))
                if not data:
                    break
                digest.update(data)
                count += len(data)
                left -= len(data)
                first = first or data[:64]
        return count, digest.hexdigest(), first

    def _send(self, code: int, body: bytes, headers=(), ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_one_request(self):
        self.server.record_connection(self.client_address)
        super().handle_one_request()

    def _dispatch(self):
        server = self.server
        if server.killed:
            _reset(self.connection)
            self.close_connection = True
            return
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        server.hits += 1
        server.seen.append((self.command, self.path, dict(self.headers)))
        if path == "/slow":
            time.sleep(float(q.get("delay", "1")))
        if path in ("/", "/echo", "/slow", "/upload"):
            count, sha, first = self._read_body()
            body = json.dumps({
                "server": server.name, "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "header_list": [[k, v] for k, v in self.headers.items()],
                "body_len": count, "body_sha256": sha, "body_head": first.decode("latin-1"),
                "client_port": self.client_address[1]}).encode()
            self._send(200, body, [("X-Server", server.name), ("Keep-Alive", "timeout=5"),
                                   ("Connection", "keep-alive, X-Hop"), ("X-Hop", "secret")])
        elif path == "/status":
            code = int(q.get("code", "200"))
            self.send_response(code)
            if code not in (204, 304):
                self.send_header("Content-Length", "2")
            else:
                self.send_header("ETag", '"x"')
            self.end_headers()
            if code not in (204, 304) and self.command != "HEAD":
                self.wfile.write(b"ok")
        elif path == "/chunked":
            self._read_body()
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Server", server.name)
            self.end_headers()
            for i in range(int(q.get("n", "5"))):
                piece = f"piece-{i};".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
        elif path == "/big":
            size = int(q.get("size", str(1 << 20)))
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            block = b"x" * (1 << 16)
            left = size
            while left:
                n = min(left, len(block))
                self.wfile.write(block[:n])
                left -= n
        elif path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"read-until-close body")
            self.close_connection = True
        elif path == "/early-hints":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self._send(200, b"after hints")
        elif path == "/garbage":
            self.wfile.write(b"this is not http\r\n\r\n")
            self.close_connection = True
        elif path == "/die":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif path == "/reset":
            _reset(self.connection)
            self.close_connection = True
        elif path == "/stall":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.")
            self.wfile.flush()
            time.sleep(float(q.get("delay", "3")))
            self.close_connection = True
        elif path == "/slow-reader":
            time.sleep(float(q.get("delay", "1")))
            count, sha, _ = self._read_body()
            self._send(200, json.dumps({"body_len": count, "body_sha256": sha}).encode())
        else:
            self._send(404, b'{"error": "no such test path"}')

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as the kernel does for a killed process."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Upstream(http.server.ThreadingHTTPServer):
    """A real HTTP/1.1 app instance on a free loopback port."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, name: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.killed = False
        self.hits = 0
        self.seen = []
        self.connections = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def record_connection(self, address) -> None:
        with self._lock:
            self.connections.add(address)

    def backend(self, index: int = 0) -> dict:
        return {"id": f"{self.name}#{index}", "host": "127.0.0.1", "port": self.port}

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def kill(self) -> None:
        """Die the way a killed instance does: new connections are refused and every
        open one is reset. An open connection is reset when its next request
        arrives, which is when a router that has not yet seen the reset finds
        out (deterministically, instead of racing the router's read of the RST)."""
        self.killed = True
        self.stop()


class WebSocketUpstream:
    """A real WebSocket echo server (the websockets library) answering 'NAME:msg'."""

    def __init__(self, name: str):
        from websockets.sync.server import serve
        self.name = name

        def echo(ws):
            for message in ws:
                ws.send(f"{name}:{message}")

        self.server = serve(echo, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def backend(self) -> dict:
        return {"id": f"{self.name}#0", "host": "127.0.0.1", "port": self.port}

    def stop(self) -> None:
        self.server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def routes(version: int, mapping: dict) -> dict:
    """{'host': (app, service, [backend dicts])} -> the routes.json document."""
    return {"version": version, "routes": {
        host: {"app": app, "service": service, "backends": list(backends)}
        for host, (app, service, backends) in mapping.items()}}


class RouterProcess:
    """`python -m router` in a temporary data directory, with helpers to drive it."""

    def __init__(self, data: Path, env: dict | None = None, table: dict | None = None,
                 args: tuple = ()):
        self.data = data
        self.args = tuple(args)      # more router flags, e.g. ("--https-port", "0")
        self.https_port = None
        self.run_dir = data / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if table is not None:
            fsutil.write_json(self.run_dir / "routes.json", table)
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.log_path = data / "router.log"
        self.proc = None
        self.start()

    def start(self) -> None:
        info = self.run_dir / "router.json"
        if info.exists():
            info.unlink()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "router", "--data", str(self.data), "--port", "0",
             "--admin-port", "0", *self.args], cwd=ROOT, env=self.env, stdout=self._log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            meta = fsutil.read_json(info)
            if meta and meta.get("pid") == self.proc.pid:
                self.port, self.admin_port = meta["port"], meta["admin_port"]
                self.https_port = meta.get("https_port")
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"router did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self, event: str, match: str = "", wait: float = 5.0) -> list[str]:
        """Lines of this event (containing match); waits a little for one to
        appear, since access lines are written in batches."""
        deadline = time.monotonic() + wait
        while True:
            lines = [line for line in self.log().splitlines()
                     if f"event='{event}'" in line and match in line]
            if lines or time.monotonic() >= deadline:
                return lines
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def write_routes(self, table: dict) -> None:
        fsutil.write_json(self.run_dir / "routes.json", table)

    def control(self, request, timeout: float = 30) -> dict:
        raw = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(self.run_dir / "router.sock"))
            s.sendall(raw)
            line = s.makefile("rb").readline()
        return json.loads(line)

    def swap(self, table: dict) -> dict:
        self.write_routes(table)
        reply = self.control({"op": "reload"})
        assert reply == {"ok": True, "version": table["version"]}, reply
        return reply

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, host: str, path: str = "/echo", method: str = "GET", body=None,
                headers: dict | None = None, timeout: float = 10):
        """One request on a fresh connection: (status, headers dict, body bytes)."""
        conn = self.connect(timeout)
        try:
            conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 5, shut: bool = False) -> bytes:
        """Send raw bytes, read until the router closes (or timeout)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            return read_until_close(s)

    def rss_peak_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def admin_get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def read_until_close(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (socket.timeout, ConnectionResetError):
        pass
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else 0


def read_response(sock_file) -> tuple[int, dict, bytes]:
    """Read one response (length or chunked body) from a socket file."""
    status_line = sock_file.readline()
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = sock_file.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(sock_file.readline().strip(), 16)
            if size == 0:
                sock_file.readline()
                break
            body += sock_file.read(size)
            sock_file.readline()
    return status, headers, body
