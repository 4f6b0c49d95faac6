import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from platform_helpers import MADE, Platform  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _open_dirs_removed():
    """The data and open directories platforms made in /tmp for app users
    (platform_helpers.open_data_dir, open_dir) go when the session ends:
    this session's only, not those of another running at the same time."""
    yield
    for path in MADE:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """One running platform shared by the end-to-end tests (apps have unique names)."""
    root = tmp_path_factory.mktemp("platform")
    p = Platform(data=root / "data", home=root)
    (root / "data").mkdir()
    # A small push limit, so the test of the limit need not push 512 MiB.
    (root / "data" / "config.yml").write_text("max_push_bytes: 8388608\n")
    p.start()
    p.add_user("alice", admin=True)
    p.add_user("bob")
    yield p
    p.stop()
    shutil.rmtree(root / "data" / "releases", ignore_errors=True)
