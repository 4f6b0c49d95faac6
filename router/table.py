"""The route table: an immutable value mapping a Host to the app service behind it.

Loaded from DATA/run/routes.json (written by the deployer, never by us). A
table is built once and never mutated; a swap replaces the reference to it.
This module does no I/O beyond reading the file it is given.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

_HOST_RE = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,252})")
_IPV6_RE = re.compile(r"\[[0-9a-f:.]{2,45}\]")


class TableError(ValueError):
    """routes.json is missing, unreadable or malformed; message says where."""


@dataclass(frozen=True)
class Backend:
    id: str
    host: str
    port: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(frozen=True)
class Route:
    app: str
    service: str
    backends: tuple[Backend, ...]
    allow_http: bool = False    # plain HTTP is served even with a valid certificate
    hsts: bool = False          # HTTPS responses carry Strict-Transport-Security


@dataclass(frozen=True)
class RouteTable:
    version: int
    routes: Mapping[str, Route]

    def lookup(self, host: str) -> Route | None:
        return self.routes.get(host)

    def backend_keys(self) -> frozenset:
        return frozenset(b.key for r in self.routes.values() for b in r.backends)


EMPTY = RouteTable(version=0, routes=MappingProxyType({}))


def normalize_host(raw: bytes) -> str | None:
    """Host header -> lookup key: lowercase, no port, no trailing dot; None if invalid."""
    try:
        host = raw.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[:end + 1], host[end + 1:]
        if end < 0 or not _IPV6_RE.fullmatch(name):
            return None
    else:
        name, colon, rest = host.partition(":")
        rest = colon + rest
        name = name.rstrip(".")
        if not _HOST_RE.fullmatch(name) or ".." in name:
            return None
    if rest and not (rest[0] == ":" and rest[1:].isdigit() and len(rest) <= 6):
        return None
    return name


def parse(data) -> RouteTable:
    if not isinstance(data, dict):
        raise TableError("routes.json: top level must be an object")
    version = data.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise TableError("routes.json: 'version' must be an integer")
    raw_routes = data.get("routes", {})
    if not isinstance(raw_routes, dict):
        raise TableError("routes.json: 'routes' must be an object")
    routes = {}
    for host, entry in raw_routes.items():
        key = normalize_host(host.encode("ascii", "replace")) if isinstance(host, str) else None
        if key is None:
            raise TableError(f"routes.json: invalid host {host!r}")
        routes[key] = _route(host, entry)
    return RouteTable(version=version, routes=MappingProxyType(routes))


def _route(host: str, entry) -> Route:
    if not isinstance(entry, dict):
        raise TableError(f"routes.json: route {host!r} must be an object")
    app, service = entry.get("app"), entry.get("service")
    if not isinstance(app, str) or not isinstance(service, str):
        raise TableError(f"routes.json: route {host!r} needs string 'app' and 'service'")
    backends = entry.get("backends", [])
    if not isinstance(backends, list):
        raise TableError(f"routes.json: route {host!r}: 'backends' must be a list")
    allow_http, hsts = entry.get("allow_http", False), entry.get("hsts", False)
    if not isinstance(allow_http, bool) or not isinstance(hsts, bool):
        raise TableError(f"routes.json: route {host!r}: 'allow_http' and 'hsts' must be booleans")
    return Route(app=app, service=service, backends=tuple(_backend(host, b) for b in backends),
                 allow_http=allow_http, hsts=hsts)


def _backend(host: str, entry) -> Backend:
    if not isinstance(entry, dict):
        raise TableError(f"routes.json: route {host!r}: a backend must be an object")
    bid, bhost, port = entry.get("id", ""), entry.get("host"), entry.get("port")
    if (not isinstance(bid, str) or not isinstance(bhost, str) or not bhost
            or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        raise TableError(f"routes.json: route {host!r}: backend needs 'host' and a 'port' in 1-65535")
    return Backend(id=bid, host=bhost, port=port)


def load(path: Path) -> RouteTable:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise TableError(f"{path.name}: not found") from None
    except (OSError, ValueError) as exc:
        raise TableError(f"{path.name}: unreadable: {exc}") from None
    return parse(data)
