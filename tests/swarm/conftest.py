"""Fixtures of the swarm runtime tests: the test cluster of swarm.sh (three
Docker engines in network namespaces, a registry on the manager's address)
and a platform started with `--runtime swarm` inside the manager's namespace,
as an operator would run it on the manager host.

The cluster is brought up once per session and torn down at the end of the
last session using it, unless it was up before the tests brought it up (a
developer's own, kept for quick reruns) or SWARM_KEEP=1. Without root or the tools it needs the tests are skipped with
the reason, except under CI (`CI` set), where that is a failure.
"""
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from swarmkit import ROOT, Cluster, swarm_platform

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "swarm.sh"
LOCK = "/tmp/dotcloud-swarm.lock"
MARK = ROOT / "up-for-tests"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"swarm tests must run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster():
    if os.geteuid() != 0:
        _unavailable("the test swarm needs root (network namespaces)")
    for tool in ("dockerd", "docker-registry", "nsenter", "ip", "iptables"):
        if shutil.which(tool) is None:
            _unavailable(f"the test swarm needs {tool} (.ci/run installs it)")
    # Sessions at once on one machine share the cluster: each holds a shared
    # lock while it uses it; bringing it up or down takes the lock alone.
    users = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(users, fcntl.LOCK_EX)
    try:
        was_up = subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0
        up = subprocess.run([SCRIPT, "up"], capture_output=True, text=True, timeout=600)
        if up.returncode == 0 and not was_up:
            MARK.touch()             # ours to take down, by whichever session ends last
    finally:
        fcntl.flock(users, fcntl.LOCK_SH)
    if up.returncode != 0:
        os.close(users)
        _unavailable(f"swarm.sh up failed: {(up.stdout + up.stderr)[-2000:]}")
    c = Cluster.read()
    yield c
    c.close()
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if MARK.exists() and os.environ.get("SWARM_KEEP") != "1":
            subprocess.run([SCRIPT, "down"], capture_output=True, timeout=300)
    except BlockingIOError:
        pass                         # another session still uses it
    finally:
        os.close(users)


@pytest.fixture(scope="session")
def splatform(cluster, tmp_path_factory):
    """One platform on the swarm runtime, shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("splatform")
    p = swarm_platform(root, cluster.docker_host, cluster.registry)
    p.start("--runtime", "swarm")
    p.add_user("alice", admin=True)
    yield p
    p.stop()
    cluster.remove_services(p.data)
    shutil.rmtree(root / "data" / "releases", ignore_errors=True)


@pytest.fixture(scope="module")
def solo(cluster):
    """A lone engine in no swarm, beside the cluster (DOCKER_HOST of it)."""
    r = subprocess.run([SCRIPT, "solo"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    yield f"unix://{ROOT}/solo/docker.sock"
    subprocess.run([SCRIPT, "solo-down"], capture_output=True, timeout=120)
