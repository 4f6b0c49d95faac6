"""The certificate daemon (`dotcloud-server acme`): every custom domain gets a
certificate from the ACME CA and keeps it.

All its state is in DATA, so a daemon killed at any point starts again
where it was:

    the domains table          which names want a certificate
    DATA/tls/NAME/status.json  where each stands (dotcloud/tlsstore.py): state,
                               not_after, renew_after, attempts, next_try, reason
    DATA/acme/                 the account and the open challenges (acme_client.py)

A name is due when it is pending or failed and its next try has come, or
valid with a third of its lifetime left (renew_after). A failure is
retried after acme_retry_first seconds, doubling up to acme_retry_max; a
failed renewal keeps the certificate it renews (HTTPS stays up until it
expires): the state says `failed` with the CA's reason and the old
not_after. Names uploaded with `domain cert` (source "upload") are left
alone. A name no longer in the domains table loses its certificate.

`domain add` and `domain rm` poke the daemon through a datagram socket
(DATA/run/acme.sock); it also wakes when the next name is due.
"""
from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import socket
import sys
import time
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path

from . import logs, tlsstore
from .datadir import DataDir
from .fsutil import write_json
from .settings import Settings
from .state import Store

# acme_client (and the ACME library) is imported where the daemon uses it,
# not by every `domain list` that imports this module.
log = logs.get("acme")
SOURCE = "acme"
IDLE_WAKE = 300.0
BUG_RETRY = 30.0
# Let's Encrypt's directories: they never certify special-use names, so those
# fail here at once instead of costing an order (a private CA may certify them).
PUBLIC_DIRECTORIES = ("https://acme-v02.api.letsencrypt.org/directory",
                      "https://acme-staging-v02.api.letsencrypt.org/directory")
RESERVED_SUFFIXES = ("localhost", "test", "example", "invalid", "local", "internal", "onion",
                     "home.arpa", "example.com", "example.net", "example.org")


# -- what the commands call ---------------------------------------------------

def sock_path(data: Path) -> Path:
    return DataDir(data).socket("acme")


def poke(data: Path) -> None:
    """Wake the daemon (never waits: a daemon that is down looks when it starts)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        s.sendto(b"wake", str(sock_path(data)))
    except OSError:
        pass
    finally:
        s.close()


def requested(settings: Settings, name: str) -> None:
    """`domain add`: the name waits for a certificate (unless it has one)."""
    current = tlsstore.status(settings.data, name)
    if current is None or current.get("source") == SOURCE and current["state"] != "valid":
        tlsstore.set_status(settings.data, name, "pending", source=SOURCE, reason=None,
                            attempts=0, next_try=0, not_after=None)
    poke(settings.data)


def forgotten(settings: Settings, name: str) -> None:
    """`domain rm`: the name's certificate goes, and nothing renews it."""
    tlsstore.remove(settings.data, name)
    tlsstore.notify_router(settings.data)
    poke(settings.data)


def view(data: Path, name: str) -> dict:
    """{state, not_after (ISO 8601, UTC), reason} of a domain, for `domain list`."""
    st = tlsstore.status(data, name) or {}
    return {"state": st.get("state", "pending"), "not_after": iso(st.get("not_after")),
            "reason": st.get("reason")}


def describe(cert: dict) -> str:
    """One cell of `domain list`: pending, valid until DATE, failed: REASON."""
    until = (cert["not_after"] or "")[:16].replace("T", " ")
    if cert["state"] == "valid":
        return f"valid until {until} UTC"
    if cert["state"] == "failed":
        kept = ""
        if until and cert["not_after"] > iso(time.time()):
            kept = f" (serving the current one until {until} UTC)"
        elif until:
            kept = f" (the last one expired {until} UTC)"
        return f"failed: {cert['reason'] or 'unknown reason'}{kept}"
    return "pending"


def iso(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return datetime.fromtimestamp(float(value), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- deciding -----------------------------------------------------------------

def retry_delay(attempts: int, first: float, cap: float) -> float:
    """Seconds before the next try after `attempts` failures in a row."""
    return min(first * 2 ** max(attempts - 1, 0), cap)


def due_at(status: dict) -> float:
    """When this name needs the CA next (0: now)."""
    if status["state"] == "valid":
        return float(status.get("renew_after") or 0)
    return float(status.get("next_try") or 0)


@dataclass(frozen=True)
class Plan:
    forget: tuple[str, ...]      # ours, but no longer a domain: remove
    start: tuple[str, ...]       # a domain without a status yet: pending
    due: tuple[str, ...]         # ask the CA now, in this order
    wake: float                  # when the next name is due (if nothing changes)


def plan(wanted: set[str], statuses: dict[str, dict | None], now: float) -> Plan:
    """What one step does, from the domains and every name's status (None: no status)."""
    forget = tuple(sorted(n for n, st in statuses.items()
                          if n not in wanted and st and st.get("source") == SOURCE))
    start = tuple(sorted(n for n in wanted if statuses.get(n) is None))
    due, wake = [], now + IDLE_WAKE
    for name in sorted(wanted):
        st = statuses.get(name) or {"state": "pending", "source": SOURCE}
        if st.get("source") != SOURCE:
            continue                 # uploaded with domain cert: not ours to renew
        at = due_at(st)
        if at <= now:
            due.append(name)
        else:
            wake = min(wake, at)
    return Plan(forget, start, tuple(due), wake)


def reserved(name: str, directory: str) -> bool:
    return directory.rstrip("/") in PUBLIC_DIRECTORIES and any(
        name == s or name.endswith("." + s) for s in RESERVED_SUFFIXES)


# -- acting -------------------------------------------------------------------

class Daemon:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data = settings.data
        from .acme_client import Issuer
        self.issuer = Issuer(settings.data, settings.acme_directory, settings.acme_email,
                             settings.acme_ca_bundle)
        self.store = Store(settings.paths.db)

    def wanted(self) -> set[str]:
        return {name for name, _, _ in self.store.domains()}

    def step(self) -> float:
        """Do what is due; return when the next thing will be."""
        wanted = self.wanted()
        names = set(tlsstore.names(self.data)) | wanted
        todo = plan(wanted, {n: tlsstore.status(self.data, n) for n in names}, time.time())
        for name in todo.forget:
            tlsstore.remove(self.data, name)           # a domain rm that stopped half-way
            tlsstore.notify_router(self.data)
            log.info("certificate_removed", name=name)
        for name in todo.start:   # added while nobody asked (or before certificates existed)
            tlsstore.set_status(self.data, name, "pending", source=SOURCE, attempts=0,
                                next_try=0, not_after=None, reason=None)
        wake = todo.wake
        for name in todo.due:
            st = self.obtain(name, tlsstore.status(self.data, name) or {})
            if name not in self.wanted():
                tlsstore.remove(self.data, name)       # removed while we asked the CA
                tlsstore.notify_router(self.data)
            elif st.get("source") == SOURCE:
                wake = min(wake, due_at(st))
        return wake

    def obtain(self, name: str, st: dict) -> dict:
        """Ask the CA for `name` once; record the outcome."""
        s = self.settings
        from .acme_client import IssueFailed, new_key_pem, validity
        where = tlsstore.directory(self.data, name)
        renewing = (where / "cert.pem").exists()
        log.info("certificate_requested", name=name, renewal=renewing,
                 attempt=int(st.get("attempts") or 0) + 1, directory=s.acme_directory)
        try:
            if reserved(name, s.acme_directory):
                raise IssueFailed(f"{name} is a reserved name that no public CA certifies; "
                                  f"upload a certificate with: domain cert APP {name}")
            # A renewal keeps the key: the certificate is then the only file
            # that changes, so no crash can pair a key with another's cert.
            try:
                key_pem = (where / "key.pem").read_bytes() if renewing else new_key_pem()
            except FileNotFoundError:
                key_pem, renewing = new_key_pem(), False
            cert_pem, failure = self.issuer.issue(name, key_pem), None
        except IssueFailed as exc:
            cert_pem, failure = None, str(exc)
        now_st = tlsstore.status(self.data, name) or {}
        if name not in self.wanted() or now_st.get("source", SOURCE) != SOURCE:
            return now_st or st      # removed, or uploaded (domain cert) while we asked
        if failure is not None:
            attempts = int(st.get("attempts") or 0) + 1
            delay = retry_delay(attempts, s.acme_retry_first, s.acme_retry_max)
            old_after = _current_not_after(where) if renewing else None
            log.warning("certificate_failed", name=name, reason=failure, attempts=attempts,
                        retry_in=delay, renewal=renewing,
                        still_served_until=iso(old_after) if old_after else None)
            return tlsstore.set_status(self.data, name, "failed", source=SOURCE,
                                       reason=failure, attempts=attempts,
                                       next_try=time.time() + delay, not_after=old_after)
        if renewing:
            tlsstore.save_certificate(self.data, name, cert_pem)
        else:
            tlsstore.save(self.data, name, cert_pem, key_pem)
        not_before, not_after = validity(cert_pem)
        renew_after = not_before + (not_after - not_before) * 2 / 3
        st = tlsstore.set_status(self.data, name, "valid", source=SOURCE, reason=None,
                                 attempts=0, next_try=None, not_after=not_after,
                                 renew_after=renew_after)
        tlsstore.notify_router(s.data)
        log.info("certificate_issued", name=name, renewal=renewing, not_after=iso(not_after),
                 renew_after=iso(renew_after))
        return st


def _current_not_after(where: Path) -> float | None:
    try:
        from .acme_client import validity
        return validity((where / "cert.pem").read_bytes())[1]
    except (OSError, ValueError):
        return None


def serve(settings: Settings) -> None:
    """Run until SIGTERM: one daemon per data directory (a lock says so)."""
    paths = settings.paths
    lock = os.open(paths.daemon_lock("acme"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)     # a predecessor still stopping: wait for it
    # challenges of orders a killed predecessor left open are worthless now
    shutil.rmtree(paths.challenges, ignore_errors=True)
    path = sock_path(settings.data)
    path.unlink(missing_ok=True)
    wake = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    wake.bind(str(path))
    wake.setblocking(False)
    daemon = Daemon(settings)
    if settings.https_port == 0:
        log.info("acme_idle", reason="HTTPS is off (https_port 0)")
    write_json(paths.daemon_info("acme"), {"pid": os.getpid()})
    log.info("acme_started", directory=settings.acme_directory, pid=os.getpid())
    # SIGTERM ends even an order in progress: its name stays due, for the next start
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            following = time.time() + IDLE_WAKE
            if settings.https_port:
                try:
                    following = daemon.step()
                except Exception:       # a corrupt file, a locked database: log, look again
                    log.exception("acme_step_failed")
                    following = time.time() + BUG_RETRY
            timeout = max(0.0, min(following - time.time(), IDLE_WAKE))
            try:
                select.select([wake], [], [], timeout)
            except InterruptedError:
                pass
            while True:
                try:
                    wake.recv(64)
                except (BlockingIOError, InterruptedError):
                    break
    finally:
        wake.close()
        path.unlink(missing_ok=True)
        log.info("acme_stopped")
