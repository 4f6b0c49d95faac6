"""SSH public keys: parsing an OpenSSH key line and its SHA256 fingerprint.

The fingerprint is the same string `ssh-keygen -lf` prints, so an operator
can match keys by eye.
"""
import base64
import binascii
import hashlib
import struct

from .errors import DotcloudError

KEY_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com"}


class BadKey(DotcloudError):
    pass


def fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_public_key(text: str) -> tuple[str, str, str]:
    """Return (keytype, base64 blob, fingerprint) of one OpenSSH public key line."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip() and not l.startswith("#")]
    if len(lines) != 1:
        raise BadKey("expected exactly one public key line (like the content of id_ed25519.pub)")
    parts = lines[0].split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise BadKey("not an OpenSSH public key: expected 'ssh-ed25519 AAAA...' or 'ssh-rsa AAAA...'")
    keytype, b64 = parts[0], parts[1]
    try:
        blob = base64.b64decode(b64, validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        embedded = blob[4:4 + n].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        raise BadKey("public key data is not valid base64 key material") from None
    if embedded != keytype:
        raise BadKey(f"public key data is a {embedded!r} key, but the line says {keytype!r}")
    return keytype, b64, fingerprint(blob)
