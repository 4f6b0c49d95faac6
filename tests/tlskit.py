"""Test certificates made at test time with `cryptography`: a CA of the test's
own (self-signed by dotcloud.selfsigned, as the platform's own are), leaves
it signs for any names and validity, and client contexts that trust it.
Nothing is read from or written to the system's trust store.
"""
from __future__ import annotations

import datetime
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from dotcloud import selfsigned
from dotcloud.selfsigned import DAY, key_pem

__all__ = ["CA", "DAY", "cert_pem", "key_pem", "serial_of"]


def cert_pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class CA:
    def __init__(self, name: str = "dotcloud test CA", days: float = 3650):
        made = selfsigned.make(name, days=days, ca=True)
        self.key, self.cert, self.pem = made.key, made.cert, made.cert_pem

    def issue(self, *names: str, days: float = 30, expired: bool = False, key=None):
        """(chain PEM: leaf then this CA, key PEM, the leaf) for these names (DNS names
        or IP addresses)."""
        key = key or selfsigned.new_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = (now - 10 * DAY, now - DAY) if expired else (now - DAY, now + days * DAY)
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(selfsigned.alt_names(names), False)
                .sign(self.key, hashes.SHA256()))
        return cert_pem(leaf) + self.pem, key_pem(key), leaf

    def client_context(self, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.pem.decode())
        if maximum is not None:
            ctx.maximum_version = maximum
        return ctx


def serial_of(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number
