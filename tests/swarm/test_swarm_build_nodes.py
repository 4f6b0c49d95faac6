"""The swarm's build nodes end to end: with a node labelled role=build, a
push builds there (the release and the dependency cache sent to its engine
and back, runtime.build_nodes) and says so; without one it builds on the
manager and says that."""
import os
from pathlib import Path

import pytest
from platform_helpers import git_repo
from swarmkit import node_app

from runtime import build_nodes, docker_engine

pytestmark = pytest.mark.swarm

SIX_APP = '''
import socket
import six
def application(environ, start_response):
    body = ("six " + six.__version__ + " " + socket.gethostname()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def set_role(cluster, hostname: str, role: str | None) -> None:
    node = cluster.client.nodes.get(cluster.nodes()[hostname].id)
    spec = node.attrs["Spec"]
    labels = dict(spec.get("Labels") or {})
    if role is None:
        labels.pop("role", None)
    else:
        labels["role"] = role
    node.update({**spec, "Labels": labels})


@pytest.fixture
def n3_engine(cluster):
    """n3's engine on tcp, as swarm.sh starts it; a test swarm brought up by an
    older swarm.sh lacks that (swarm.sh down, then up)."""
    url = f"tcp://{cluster.nodes()['n3'].addr}:{build_nodes.ENGINE_PORT}"
    try:
        docker_engine.client_of(url).close()
    except docker_engine.EngineError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e), pytrace=False)
        pytest.skip(f"{e}: swarm.sh down, then up")
    return url


@pytest.fixture
def n3_builds(cluster, n3_engine):
    set_role(cluster, "n3", "build")
    try:
        yield
    finally:
        set_role(cluster, "n3", None)


@pytest.mark.slow
def test_a_build_node_builds_the_push(splatform, cluster, n3_builds, tmp_path):
    # six pinned older than its newest: the build node installed what was asked.
    repo = git_repo(tmp_path / "repo", {"wsgi.py": SIX_APP, "requirements.txt": "six==1.15.0\n",
                                        "dotcloud.yml": "www:\n  type: python\n  instances: 1\n"})
    r = splatform.push("alice", repo, "built")
    assert r.code == 0, r.text
    assert "[www] I am n3, and I will be your builder today" in r.text, r.text
    status, body, _ = splatform.get("built.localhost")
    assert status == 200 and body.startswith("six 1.15.0 "), body


def test_without_build_nodes_the_manager_builds(splatform, cluster, tmp_path):
    assert not any(n.labels.get("role") == "build" for n in cluster.nodes().values())
    repo = git_repo(tmp_path / "repo", node_app("v1", instances=1))
    r = splatform.push("alice", repo, "onmanager")
    assert r.code == 0, r.text
    assert "[www] I am n1, and I will be your builder today" in r.text, r.text
    status, body, _ = splatform.get("onmanager.localhost")
    assert status == 200 and body.startswith("v1 "), body


def test_the_builder_is_a_labelled_node_else_the_manager(cluster, n3_engine, monkeypatch):
    name, remote = build_nodes.builder(cluster.client)
    assert (name, remote) == ("n1", None)
    set_role(cluster, "n3", "build")
    try:
        name, remote = build_nodes.builder(cluster.client)
        assert name == "n3" and remote.info()["Name"] == "n3"
        remote.close()
        # A build node whose engine does not answer: the manager builds.
        monkeypatch.setattr(build_nodes, "ENGINE_PORT", 1)
        assert build_nodes.builder(cluster.client) == ("n1", None)
    finally:
        set_role(cluster, "n3", None)


def test_a_build_node_gets_the_directories_and_gives_back_what_steps_did(cluster, n3_engine,
                                                                         tmp_path):
    release, cache = tmp_path / "release", tmp_path / "cache"
    release.mkdir()
    cache.mkdir()
    (release / "kept").write_text("kept\n")
    (release / "removed").write_text("removed\n")
    remote = docker_engine.client_of(n3_engine)
    # swarm.sh copies it into every node.
    image = os.environ.get("DOTCLOUD_DOCKER_PYTHON_IMAGE", "python:3.12-slim")
    executor = build_nodes.NodeExecutor(
        remote, image, docker_engine.image_id(remote, image), f"hb-build-nodes-{os.getpid()}",
        {"network_mode": "host", "user": "0:0", "volumes": {}}, synced=(release, cache),
        readonly=())
    lines: list[str] = []
    try:
        step = (f"cat {release}/kept; hostname; echo made > {release}/new; rm {release}/removed;"
                f" mkdir -p {cache}/entry; echo filled > {cache}/entry/file")
        assert executor.run(["sh", "-c", step], cwd=Path("/"), env={}, timeout=60,
                            on_line=lines.append) == 0
        assert lines == ["kept", "n3"]
        assert sorted(p.name for p in release.iterdir()) == ["kept", "new"]
        assert (cache / "entry" / "file").read_text() == "filled\n"
        # What the manager removes between steps does not come back after the next.
        (release / "new").unlink()
        lines.clear()
        assert executor.run(["ls", str(release)], cwd=Path("/"), env={}, timeout=60,
                            on_line=lines.append) == 0
        assert lines == ["kept"]
        assert sorted(p.name for p in release.iterdir()) == ["kept"]
        # A link a step left where the next makes a directory is never written through.
        outside = tmp_path / "outside"
        outside.mkdir()
        assert executor.run(["ln", "-s", str(outside), f"{release}/link"], cwd=Path("/"),
                            env={}, timeout=60, on_line=lines.append) == 0
        assert (release / "link").is_symlink()
        step = f"rm {release}/link; mkdir {release}/link; echo x > {release}/link/x"
        assert executor.run(["sh", "-c", step], cwd=Path("/"), env={}, timeout=60,
                            on_line=lines.append) == 0
        assert list(outside.iterdir()) == []
        assert not (release / "link").is_symlink() and (release / "link" / "x").read_text() == "x\n"
    finally:
        executor.close()
        remote.close()
