"""Deploys on the 3-node test swarm: zero-downtime pushes under load across
nodes, a release that never becomes healthy, a rollback without a rebuild
(a node lost under load: test_swarm_zz_node_loss)."""
import json
import time

import pytest
from loadgen import Load
from platform_helpers import git_repo
from swarmkit import in_node, node_app

from dotcloud import placement
from dotcloud.state import Store

pytestmark = pytest.mark.swarm

BROKEN_APP = "import this_module_does_not_exist\n"


def load_on(platform, host: str, clients: int = 4) -> Load:
    return Load(platform.http_port, host, clients=clients, address=platform.address)


def versions(load: Load) -> set[str]:
    return {body.split()[0] for body in load.bodies}


def running(platform, app: str) -> list:
    """The app's instances that should run, from the platform's store."""
    store = Store(platform.data / "dotcloud.db")
    active = store.app(app).generation
    return [i for i in store.instances(app, generation=active) if i.desired == "run"]


def where(platform, app: str) -> dict[str, tuple[str, int]]:
    """Instance label -> (node address, port) of the active generation."""
    out = {}
    for inst in running(platform, app):
        placed = placement.of(platform.data, inst.spec)
        assert placed is not None and placed.addr, (inst.label, placed)
        out[inst.label] = (placed.addr, inst.port)
    return out


def direct(addr: str, port: int) -> str:
    """GET an instance at its node's address from the manager's namespace."""
    r = in_node(1, "curl", "-fsS", "-m", "5", f"http://{addr}:{port}/")
    assert r.returncode == 0, r.stderr
    return r.stdout


def routed(platform, host: str) -> list[tuple[str, int]]:
    table = json.loads((platform.data / "run" / "routes.json").read_text())["routes"]
    return sorted((b["host"], b["port"]) for b in table[host]["backends"])


@pytest.fixture(scope="module")
def zd(splatform, tmp_path_factory):
    repo = git_repo(tmp_path_factory.mktemp("zd") / "repo", node_app("v1"))
    r = splatform.push("alice", repo, "zd")
    assert r.code == 0, r.text
    return repo


def test_push_under_load_across_nodes_loses_nothing(splatform, cluster, zd):
    with load_on(splatform, "zd.localhost") as load:
        load.wait_ok(20)
        git_repo(zd, node_app("v2"), "v2")
        r = splatform.push("alice", zd, "zd")
        assert r.code == 0, r.text
        load.wait_ok(load.ok + 20)
    assert load.failures == 0, load.errors[:5]
    assert versions(load) == {"v1", "v2"}
    assert {body.split()[1] for body in load.bodies} - {"n1"}, "no other node answered"
    assert sorted(where(splatform, "zd").values()) == routed(splatform, "zd.localhost")
    assert all(direct(a, p).startswith("v2 ") for a, p in where(splatform, "zd").values())


def test_release_that_never_answers_is_rejected_and_the_old_one_serves(splatform, cluster, zd):
    before = where(splatform, "zd")
    old = direct(*next(iter(before.values()))).split()[0]
    git_repo(zd, dict(node_app("v3"), **{"wsgi.py": BROKEN_APP}), "broken")
    with load_on(splatform, "zd.localhost") as load:
        load.wait_ok(10)
        r = splatform.push("alice", zd, "zd")
        load.wait_ok(load.ok + 10)
    assert r.code != 0
    assert "crashed at boot" in r.err, r.err
    # The crashed task's traceback, from its node, though the swarm tells its
    # end before its log; no line of the old instances serving meanwhile.
    assert "ModuleNotFoundError" in r.err, r.err
    assert '"GET / HTTP/1.1" 200' not in r.err, r.err
    assert load.failures == 0, load.errors[:5]
    assert versions(load) == {old}
    # Every old instance still serves on its node, and only they are routed.
    assert where(splatform, "zd") == before
    assert all(direct(a, p).startswith(f"{old} ") for a, p in before.values())
    assert routed(splatform, "zd.localhost") == sorted(before.values())
    deadline = time.monotonic() + 60
    while len(cluster.tasks(splatform.data, "zd")) != len(before):
        assert time.monotonic() < deadline, "the failed release's services were not removed"
        time.sleep(0.5)


def test_rollback_deploys_the_previous_image_without_a_build(splatform, cluster, zd):
    git_repo(zd, node_app("v4"), "v4")
    r = splatform.push("alice", zd, "zd")
    assert r.code == 0, r.text
    with load_on(splatform, "zd.localhost") as load:
        load.wait_ok(10)
        r = splatform.ssh("alice", "rollback", "zd")
        assert r.code == 0, r.text
        load.wait_ok(load.ok + 10)
    assert "Build started" not in r.text and "Building" not in r.text
    assert load.failures == 0, load.errors[:5]
    bodies = {direct(a, p).split()[0] for a, p in where(splatform, "zd").values()}
    assert bodies == {"v2"}
