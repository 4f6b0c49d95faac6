"""`up --runtime swarm` against a lone engine: it becomes a one-node swarm,
and without a registry the instances run from the manager's own images."""
import docker
import pytest
from platform_helpers import git_repo
from swarmkit import SOLO, node_app, swarm_platform

from runtime import swarm

pytestmark = pytest.mark.swarm


def test_lone_engine_becomes_a_one_node_swarm(solo, tmp_path):
    engine = docker.DockerClient(base_url=solo, timeout=60)
    assert engine.info()["Swarm"]["LocalNodeState"] == "inactive"
    p = swarm_platform(tmp_path / "p", solo, address=SOLO, netns="swn-solo")
    p.start("--runtime", "swarm")
    try:
        p.add_user("alice", admin=True)
        assert engine.info()["Swarm"]["LocalNodeState"] == "active"
        assert [n.hostname for n in swarm.nodes(engine)] == ["solo"]
        repo = git_repo(tmp_path / "repo", node_app("v1", instances=2))
        r = p.push("alice", repo, "solo")
        assert r.code == 0, r.text
        for _ in range(4):
            status, body, _ = p.get("solo.localhost")
            assert (status, body) == (200, "v1 solo")
        services = swarm.services(engine, p.data)
        assert len(services) == 2
        # No registry: the image is the manager's own, by name, and so are its tasks'.
        image = services[0].attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image.startswith("dotcloud/solo:v1-www")
        assert "node.role==manager" in services[0].attrs["Spec"]["TaskTemplate"][
            "Placement"]["Constraints"]
    finally:
        p.stop()
        for service in swarm.services(engine, p.data):
            swarm.remove_service(engine, service.name)
        engine.close()
