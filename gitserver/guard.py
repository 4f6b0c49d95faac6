"""What an SSH connection may cost before it proves who it is.

Until a connection authenticates it holds a slot: at most `per_source`
from one address and `total` overall, so a flood of half-open logins cannot
exhaust the daemon's threads and descriptors. Each slot has a deadline (the
login grace time); a connection still unauthenticated at its deadline is
closed. The algorithms offered are the modern ones only. This module never
decides who a key belongs to.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Callable

import paramiko

# curve25519 and the ML-KEM hybrid; no NIST curves, no finite-field groups.
KEX = ("mlkem768x25519-sha256", "curve25519-sha256@libssh.org")
# AEAD first; CTR only with encrypt-then-MAC. No CBC, no 3DES.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
           "aes128-ctr", "aes192-ctr", "aes256-ctr")
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com")
# Signatures a user key may make: no SHA-1 RSA ("ssh-rsa"), no NIST curves.
PUBKEYS = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")


def restrict(transport: paramiko.Transport) -> None:
    """Offer only the algorithms above on this connection."""
    options = transport.get_security_options()
    options.kex = KEX
    options.ciphers = CIPHERS
    options.digests = MACS
    options.key_types = ("ssh-ed25519",)
    transport._preferred_pubkeys = PUBKEYS  # paramiko has no public setter for it


class LoginGuard:
    """Slots for unauthenticated connections, per source address and in total."""

    def __init__(self, grace: float, per_source: int, total: int) -> None:
        self.grace = grace
        self.per_source = per_source
        self.total = total
        self._lock = threading.Lock()
        self._by_source: Counter[str] = Counter()

    def admit(self, source: str) -> bool:
        """Take a slot for a new connection from source; False when none is left."""
        with self._lock:
            if (sum(self._by_source.values()) >= self.total
                    or self._by_source[source] >= self.per_source):
                return False
            self._by_source[source] += 1
            return True

    def release(self, source: str) -> None:
        with self._lock:
            self._by_source[source] -= 1
            if self._by_source[source] <= 0:
                del self._by_source[source]

    def watch(self, authenticated: Callable[[], bool], close: Callable[[], None]) -> threading.Timer:
        """Close the connection at the grace time unless it authenticated by then."""
        def expire() -> None:
            if not authenticated():
                close()
        timer = threading.Timer(self.grace, expire)
        timer.daemon = True
        timer.start()
        return timer
