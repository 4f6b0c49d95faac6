"""The swarm runtime end to end on the 3-node test swarm: pushes become
release images in the registry, instances are swarm services spread over
the nodes, and the router in the manager's namespace proxies to them."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from platform_helpers import git_repo
from swarmkit import node_app

pytestmark = pytest.mark.swarm

def answers(platform, host: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        status, body, _ = platform.get(host)
        assert status == 200, body
        out.append(body)
    return out


def status_json(platform, app: str) -> dict:
    r = platform.ssh("alice", "status", app, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)


@pytest.fixture(scope="module")
def spread(splatform, tmp_path_factory):
    repo = git_repo(tmp_path_factory.mktemp("spread") / "repo", node_app("v1"))
    r = splatform.push("alice", repo, "spread")
    assert r.code == 0, r.text
    return repo


def test_push_runs_three_instances_on_several_nodes(splatform, cluster, spread):
    nodes = cluster.tasks(splatform.data, "spread")
    assert len(nodes) == 3, nodes
    assert len(set(nodes)) >= 2, nodes
    rows = [i for i in status_json(splatform, "spread")["instances"] if i["desired"] == "run"]
    assert sorted(i["node"] for i in rows) == nodes
    # The nodes pulled the release image from the registry.
    with urllib.request.urlopen(f"http://{cluster.registry}/v2/dotcloud/spread/tags/list",
                                timeout=10) as resp:
        assert "v1-www" in json.load(resp)["tags"]


def test_router_in_the_manager_reaches_other_nodes(splatform, cluster, spread):
    seen = set()
    deadline = time.monotonic() + 30
    while len(seen) < len(set(cluster.tasks(splatform.data, "spread"))):
        assert time.monotonic() < deadline, seen
        seen |= {body.split()[1] for body in answers(splatform, "spread.localhost", 6)}
    assert all(body.startswith("v1 ") for body in answers(splatform, "spread.localhost", 3))
    assert seen - {"n1"}, "only the manager's instances answered"


def test_nodes_lists_nodes_and_their_instances(splatform, cluster, spread):
    r = subprocess.run([sys.executable, "-m", "dotcloud.cli", "--data", str(splatform.data),
                        "nodes", "--json"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, DOCKER_HOST=cluster.docker_host))
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    by_node = {n["node"]: n for n in listed["nodes"]}
    assert set(by_node) == {f"n{i}" for i in range(1, cluster.size + 1)}
    assert by_node["n2"]["labels"] == {"flavor": "live"}
    placed = sorted(n for n, row in by_node.items() for i in row["instances"]
                    if i.startswith("spread.www."))
    assert placed == cluster.tasks(splatform.data, "spread")


def test_placement_keeps_instances_on_labelled_nodes(splatform, cluster, tmp_path):
    repo = git_repo(tmp_path / "live", node_app("v1", extra="  placement: {flavor: live}\n"))
    r = splatform.push("alice", repo, "live")
    assert r.code == 0, r.text
    labelled = {h for h, n in cluster.nodes().items() if n.labels.get("flavor") == "live"}
    nodes = cluster.tasks(splatform.data, "live")
    assert len(nodes) == 3 and set(nodes) <= labelled, nodes
    assert {body.split()[1] for body in answers(splatform, "live.localhost", 9)} <= labelled
