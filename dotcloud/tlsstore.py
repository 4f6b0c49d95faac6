"""Where certificates live: one directory per name under DATA/tls.

    DATA/tls/NAME/cert.pem     leaf first, then its chain      (0600)
    DATA/tls/NAME/key.pem      its private key                 (0600)
    DATA/tls/NAME/status.json  {state, not_after, reason, source, updated,
                                renew_after, attempts, next_try}  (0600)

`state` is pending (asked for, nothing valid yet), valid or failed; a
failed renewal keeps the old cert.pem and key.pem (HTTPS stays up until
they expire) and says why in `reason`. Writers (uploads, the ACME client)
write key, then certificate, then status, each crash-safely, and then ask
the router to reload (`notify_router`): it reads cert.pem and key.pem only,
never status.json. NAME is a validated domain name, or `_platform` for
`tls_cert`/`tls_key` of config.yml, which the router reads from where the
operator put them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .control import ControlUnavailable, request
from .datadir import DataDir
from .fsutil import read_json, write_atomic, write_json

STATES = ("pending", "valid", "failed")


def root(data: Path) -> Path:
    return DataDir(data).tls


def directory(data: Path, name: str) -> Path:
    return root(data) / name


def save(data: Path, name: str, cert_pem: bytes, key_pem: bytes) -> None:
    """Store a certificate and its key (the key first: never a cert without its key)."""
    where = directory(data, name)
    where.mkdir(parents=True, exist_ok=True)
    os.chmod(where, 0o700)
    write_atomic(where / "key.pem", key_pem, mode=0o600)
    write_atomic(where / "cert.pem", cert_pem, mode=0o600)


def save_certificate(data: Path, name: str, cert_pem: bytes) -> None:
    """Replace the certificate of a key that stays (a renewal that keeps its key):
    one atomic write, so a crash never leaves a key beside another's certificate."""
    write_atomic(directory(data, name) / "cert.pem", cert_pem, mode=0o600)


def status(data: Path, name: str) -> dict | None:
    return read_json(directory(data, name) / "status.json")


def set_status(data: Path, name: str, state: str, **fields) -> dict:
    if state not in STATES:
        raise ValueError(f"unknown certificate state {state!r}")
    value = dict(status(data, name) or {}, state=state, updated=time.time(), **fields)
    directory(data, name).mkdir(parents=True, exist_ok=True)
    write_json(directory(data, name) / "status.json", value, mode=0o600)
    return value


def names(data: Path) -> list[str]:
    base = root(data)
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def remove(data: Path, name: str) -> None:
    where = directory(data, name)
    for child in ("cert.pem", "key.pem", "status.json"):
        try:
            (where / child).unlink()
        except FileNotFoundError:
            pass
    try:
        where.rmdir()
    except OSError:
        pass


def notify_router(data: Path) -> None:
    """Ask the router to load the certificates again (new connections use them at once)."""
    try:
        request(DataDir(data).socket("router"), {"op": "reload"})
    except ControlUnavailable:
        pass  # a router that is down loads them when it starts
