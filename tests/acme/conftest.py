"""A platform whose ACME CA is a real pebble (short-lived certificates, so
renewals happen within a test), shared by the module's tests."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pebble_ca import Pebble, available, free_port  # noqa: E402
from platform_helpers import Platform  # noqa: E402

# pebble's certificateValidityPeriod: renewed 20 s after issuance (a third left)
VALIDITY = 30


@pytest.fixture(scope="module")
def acme_platform(tmp_path_factory):
    if not available() and not os.environ.get("CI"):
        pytest.skip("pebble is not installed (apt-get install pebble)")
    root = tmp_path_factory.mktemp("acme")
    ca = Pebble(root / "pebble", validity=VALIDITY)
    p = Platform(data=root / "data", home=root, http_port=free_port(), https_port=free_port())
    (root / "data").mkdir()
    # failures retried after 1 s, 2 s, then every 4 s
    (root / "data" / "config.yml").write_text(
        ca.config_yml() + "acme_retry_first: 1\nacme_retry_max: 4\n")
    ca.start(p.http_port)      # pebble validates on the router's plain HTTP port
    try:
        p.start()
        p.add_user("alice", admin=True)
        p.ca = ca
        yield p
    finally:
        p.stop()
        ca.stop()
