"""The test swarm itself (swarm.sh): what the other swarm tests stand on."""
import json
import urllib.request

import pytest
from swarmkit import in_node

from runtime import swarm

pytestmark = pytest.mark.swarm


def test_three_ready_nodes_with_labels_and_a_manager(cluster):
    nodes = cluster.nodes()
    assert sorted(nodes) == [f"n{i}" for i in range(1, cluster.size + 1)]
    assert all(n.state == "ready" and n.availability == "active" for n in nodes.values())
    assert nodes["n1"].role == "manager" and nodes["n1"].addr == "10.213.0.11"
    assert nodes["n2"].labels == nodes["n3"].labels == {"flavor": "live"}
    assert swarm.ensure_swarm(cluster.client).startswith("swarm manager of 3 node(s)")


def test_registry_answers_from_the_host_and_the_nodes(cluster):
    with urllib.request.urlopen(f"http://{cluster.registry}/v2/_catalog", timeout=10) as resp:
        assert "repositories" in json.load(resp)
    r = in_node(3, "curl", "-fsS", f"http://{cluster.registry}/v2/")
    assert r.returncode == 0, r.stderr
