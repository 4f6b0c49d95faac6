"""The SSH server's host key: created once in the data directory, then reused."""
import os
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dotcloud.fsutil import write_atomic


def load_or_create(path: Path) -> paramiko.PKey:
    if not path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        write_atomic(path, pem, mode=0o600)
    os.chmod(path, 0o600)
    return paramiko.Ed25519Key(filename=str(path))
