"""Client for the daemons' control sockets: one JSON request per line, one
JSON reply per line, over a Unix socket in DATA/run.
"""
import json
import socket
from pathlib import Path


class ControlUnavailable(OSError):
    pass


def request(sock_path: Path, message: dict, timeout: float = 10.0) -> dict:
    """Send one request and wait for its reply; raise ControlUnavailable if
    the daemon is not there (a caller decides whether that matters)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
        s.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError as exc:
        raise ControlUnavailable(f"{sock_path.name}: {exc}") from exc
    finally:
        s.close()
    try:
        return json.loads(buf)
    except ValueError as exc:
        raise ControlUnavailable(f"{sock_path.name}: bad reply {buf[:100]!r}") from exc
