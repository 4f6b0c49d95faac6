"""Fixtures of the resilience tests: a platform of their own (they kill its
daemons and stop it), never the session's shared one."""
import shutil

import pytest
from platform_helpers import Platform


@pytest.fixture(scope="module")
def own_platform(tmp_path_factory):
    """A running `up` for one test module, with an admin user alice."""
    root = tmp_path_factory.mktemp("resilience")
    p = Platform(data=root / "data", home=root)
    p.start()
    p.add_user("alice", admin=True)
    yield p
    p.stop()
    shutil.rmtree(root / "data" / "releases", ignore_errors=True)


@pytest.fixture
def fresh_platform(tmp_path):
    """A platform for one test, which may stop and start it; stopped at the end."""
    p = Platform(data=tmp_path / "data", home=tmp_path)
    yield p
    p.stop()
