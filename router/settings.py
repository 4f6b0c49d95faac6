"""The router's settings: one frozen value built at the edge from the environment.

Every tunable the router has lives here with its default; code elsewhere
receives a Settings and never reads the environment itself.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Mapping

from dotcloud.errors import UsageError

ENV_PREFIX = "DOTCLOUD_ROUTER_"
BALANCE_POLICIES = ("round_robin", "least_conn")


@dataclass(frozen=True)
class Settings:
    connect_timeout: float = 5.0        # opening a connection to an instance
    first_byte_timeout: float = 60.0    # request sent -> first response byte
    idle_timeout: float = 60.0          # no byte either way while a body streams
    keepalive_timeout: float = 75.0     # idle client connection between requests
    header_timeout: float = 10.0        # a request's head must arrive within this
    min_body_rate: int = 512            # bytes/s a request body must keep up, per window
    body_rate_grace: float = 10.0       # ...of this many seconds (slow-body cut: 408)
    max_request_line: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    balance: str = "round_robin"
    down_seconds: float = 5.0           # passive health: how long a failed instance is skipped
    pool_idle_timeout: float = 30.0     # pooled upstream connections unused this long are closed
    pool_max_idle: int = 256            # per instance
    trusted_proxies: frozenset = field(default_factory=frozenset)
    access_log: bool = True
    shutdown_grace: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read DOTCLOUD_ROUTER_<FIELD> variables; a bad value is a UsageError."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        settings = cls(**values)
        if settings.balance not in BALANCE_POLICIES:
            raise UsageError(f"{ENV_PREFIX}BALANCE must be one of {', '.join(BALANCE_POLICIES)}")
        return settings


def _convert(name: str, kind: str, raw: str):
    try:
        if kind == "float":
            value = float(raw)
            if not value > 0:
                raise ValueError
            return value
        if kind == "int":
            value = int(raw)
            if value <= 0:
                raise ValueError
            return value
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("1", "true", "yes", "on")
        if kind == "frozenset":
            items = [item.strip() for item in raw.split(",") if item.strip()]
            return frozenset(str(ipaddress.ip_address(item)).encode() for item in items)
        return raw.strip()
    except ValueError:
        raise UsageError(f"invalid value for {ENV_PREFIX}{name.upper()}: {raw!r}") from None
