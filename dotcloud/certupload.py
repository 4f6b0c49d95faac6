"""Checking an uploaded certificate (`domain cert APP NAME`, a PEM bundle on stdin).

The bundle holds the certificate (the leaf first, then its chain) and its
private key, in any order. check() refuses, with one line each: malformed
PEM, no certificate or no key, an encrypted key, a certificate not valid
yet or expired, one whose names (subjectAltName DNS entries, wildcards one
label deep) do not cover NAME, and a key that is not the certificate's. It
returns what tlsstore.save() stores; nothing here writes or talks to anyone.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .errors import DotcloudError

MAX_BUNDLE = 256 * 1024
_BLOCK_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
_KEY_LABELS = (b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY")


class CertificateRefused(DotcloudError):
    """The upload is not stored; the message says why, in one line."""


@dataclass(frozen=True)
class Checked:
    chain_pem: bytes      # leaf first, then the rest as given
    key_pem: bytes        # PKCS#8, unencrypted (stored 0600)
    not_after: float      # the leaf's, epoch seconds
    names: tuple[str, ...]


def covers(patterns, name: str) -> bool:
    """Does a certificate for these DNS names serve `name`? (RFC 6125: a
    wildcard is a whole left-most label and matches exactly one label)."""
    name = name.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name:
            label, rest = name.split(".", 1)
            if label and rest == pattern[2:] and "*" not in rest:
                return True
    return False


def check(bundle: bytes, name: str, now: float | None = None) -> Checked:
    now = time.time() if now is None else now
    blocks = [(m.group(1), m.group(0)) for m in _BLOCK_RE.finditer(bundle)]
    certs = [b for label, b in blocks if label == b"CERTIFICATE"]
    keys = [b for label, b in blocks if label in _KEY_LABELS]
    if not blocks:
        raise CertificateRefused("malformed PEM: no -----BEGIN ...----- block found; send the "
                                 "certificate chain and its key, e.g. cat fullchain.pem key.pem")
    if not certs:
        raise CertificateRefused("no certificate in the PEM bundle (a BEGIN CERTIFICATE block)")
    if not keys:
        raise CertificateRefused("no private key in the PEM bundle (a BEGIN PRIVATE KEY block)")
    if len(keys) > 1:
        raise CertificateRefused("more than one private key in the PEM bundle")
    try:
        chain = [x509.load_pem_x509_certificate(b) for b in certs]
    except ValueError as exc:
        raise CertificateRefused(f"malformed PEM: a certificate cannot be read ({_first(exc)})") \
            from None
    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
    except TypeError:
        raise CertificateRefused("the private key is encrypted; send it without a passphrase") \
            from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateRefused(f"malformed PEM: the private key cannot be read ({_first(exc)})") \
            from None
    leaf = chain[0]
    start, end = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
    if end <= now:
        raise CertificateRefused(f"the certificate expired on {_date(end)}")
    if start > now:
        raise CertificateRefused(f"the certificate is not valid before {_date(start)}")
    try:
        names = tuple(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                      .value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    if not covers(names, name):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") or "no DNS names"
        raise CertificateRefused(f"the certificate does not cover {name} (it is for {shown})")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise CertificateRefused("the private key does not match the certificate "
                                 "(the first certificate of the bundle must be the leaf)")
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Checked(chain_pem, key_pem, end, names)


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _first(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]
