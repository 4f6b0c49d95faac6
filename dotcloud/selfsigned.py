"""Self-signed certificates: a new key and a certificate signed by that key.

The platform makes one for each postgresql service's TLS
(hooks.datastores); the HTTPS benchmark serves one, and the tests' own CAs
start as one (tests/tlskit.py). One recipe for all: an ECDSA P-256 key,
SHA-256, valid from a day back (clocks disagree a little) for `days` days.
Nothing here reads or writes a file.
"""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class SelfSigned:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    """A private key as unencrypted PKCS#8 PEM (what nginx, postgres and ssl load)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def alt_names(names) -> x509.SubjectAlternativeName:
    """DNS names and IP addresses as one subjectAltName (an address is an IPAddress entry:
    clients never match an address against a DNS entry)."""
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make(name: str, *more: str, days: float = 3650, ca: bool = False) -> SelfSigned:
    """A certificate for `name` (its common name) and `more`, signed by its own new key.

    A host certificate names them all (DNS names or addresses) as
    subjectAltName; a CA (`ca=True`) has only its common name, and the
    basicConstraints that let it sign others.
    """
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - DAY).not_valid_after(now + days * DAY))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    else:
        builder = builder.add_extension(alt_names((name, *more)), critical=False)
    return SelfSigned(key, builder.sign(key, hashes.SHA256()))
