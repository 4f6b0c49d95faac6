"""The control interface: newline-delimited JSON over DATA/run/router.sock.

The deployer asks the router to reload routes.json, to drain backends, or
for its status. Every request gets exactly one JSON reply line; a bad
request gets {"ok": false, "error": ...} and never disturbs the router.
This module only translates requests into Router calls.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

from dotcloud.errors import UsageError

from .table import TableError

MAX_LINE = 1 << 20


def status(router) -> dict:
    return {"ok": True, "version": router.table.version, "routes": len(router.table.routes),
            "in_flight": router.targets.in_flight()}


async def start(router, path: Path) -> asyncio.AbstractServer:
    """Listen on the socket path, replacing a stale socket left by a dead router."""
    _remove_stale(path)

    async def serve(reader, writer):
        try:
            await _session(router, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            router.log.exception("router_bug", where="control")
        finally:
            writer.close()

    server = await asyncio.start_unix_server(serve, path=os.fspath(path), limit=MAX_LINE)
    os.chmod(path, 0o600)
    return server


def _remove_stale(path: Path) -> None:
    """Remove a leftover socket file, unless a live router still answers on it."""
    if path.is_socket():
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(os.fspath(path))
            except OSError:
                pass
            else:
                raise UsageError(f"another router is running on {path}")
    if path.exists() and not path.is_dir():
        path.unlink()


async def _session(router, reader, writer) -> None:
    while True:
        try:
            line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            writer.write(_encode({"ok": False, "error": "request line too long"}))
            await writer.drain()
            return
        if not line:
            return
        if not line.strip():
            continue
        reply = await handle(router, line)
        writer.write(_encode(reply))
        await writer.drain()


def _encode(reply: dict) -> bytes:
    return json.dumps(reply, sort_keys=True).encode() + b"\n"


async def handle(router, line: bytes) -> dict:
    try:
        request = json.loads(line)
    except ValueError:
        return {"ok": False, "error": "not JSON"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    op = request.get("op")
    if op == "reload":
        # certificates first: a routes.json that cannot be read must not keep
        # a renewed certificate out
        try:
            router.load_certificates()
        except Exception:
            router.log.exception("router_bug", where="certificates")
        try:
            table = router.load()
        except TableError as exc:
            router.log.warning("routes_reload_failed", error=str(exc))
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "version": table.version}
    if op == "drain":
        keys, timeout, problem = _drain_args(request)
        if problem:
            return {"ok": False, "error": problem}
        drained, in_flight = await router.drain(keys, timeout)
        router.log.info("backends_drained", backends=len(keys), drained=drained,
                        in_flight=in_flight)
        return {"ok": True, "drained": drained, "in_flight": in_flight}
    if op == "status":
        return status(router)
    return {"ok": False, "error": f"unknown op {op!r}" if op is not None else "missing 'op'"}


def _drain_args(request: dict):
    backends = request.get("backends")
    timeout = request.get("timeout", 30)
    if not isinstance(backends, list):
        return None, None, "'backends' must be a list of [host, port]"
    keys = set()
    for item in backends:
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], int) or isinstance(item[1], bool)):
            return None, None, f"invalid backend {item!r}: expected [host, port]"
        keys.add((item[0], item[1]))
    if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
            or not 0 <= timeout <= 3600):
        return None, None, "'timeout' must be a number of seconds between 0 and 3600"
    return keys, float(timeout), ""
