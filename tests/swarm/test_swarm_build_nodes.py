"""The swarm's build nodes end to end: with a node labelled role=build, a
push builds there as a swarm task (runtime.build_nodes: a service running
runtime.build_agent, the release and the cache entries the build uses sent
to it and back as deltas) and says so; without one it builds on the manager
and says that."""
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from platform_helpers import git_repo
from swarmkit import node_app

from runtime import build_nodes, docker_build, docker_engine, swarm

pytestmark = pytest.mark.swarm

SIX_APP = '''
import socket
import six
def application(environ, start_response):
    body = ({version!r} + " six " + six.__version__ + " " + socket.gethostname()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''
# Says where the build's steps run: the node's hostname, the task's pid 1 (the
# swarm's init running the agent) and whether a step can read the build's token.
HOOK = ("echo \"hook on $(hostname) as uid $(id -u) under $(tr '\\000' ' ' < /proc/1/cmdline)\";"
        " cat /run/secrets/dotcloud-build-token 2>/dev/null || echo token-unreadable")
IMAGE = os.environ.get("DOTCLOUD_DOCKER_PYTHON_IMAGE", "python:3.12-slim")


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
def n3_builds(cluster):
    set_role(cluster, "n3", "build")
    try:
        yield
    finally:
        set_role(cluster, "n3", None)


def build_services(cluster, data: Path) -> list:
    label = f"{build_nodes.LABEL_BUILD}={docker_engine.data_id(data)}"
    return cluster.client.services.list(filters={"label": label})


class Watch:
    """The nodes (hostnames) where the data directory's build tasks ran,
    seen while a push builds."""

    def __init__(self, cluster, data: Path):
        self.cluster, self.data = cluster, data
        self.seen: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def _loop(self):
        by_id = {n.id: h for h, n in self.cluster.nodes().items()}
        while not self.stop.wait(0.2):
            try:
                for service in build_services(self.cluster, self.data):
                    for task in service.tasks():
                        if (task.get("Status") or {}).get("State") == "running":
                            self.seen.add(by_id.get(task.get("NodeID"), "?"))
            except docker_engine.ENGINE_ERRORS:
                pass


def six_repo(path: Path, version: str, hook: str = HOOK) -> Path:
    return git_repo(path, {
        "wsgi.py": SIX_APP.format(version=version), "requirements.txt": "six==1.15.0\n",
        "dotcloud.yml": f"www:\n  type: python\n  instances: 1\n  prebuild: {json.dumps(hook)}\n"})


@pytest.mark.slow
def test_a_build_node_builds_the_push_as_a_swarm_task(splatform, cluster, n3_builds, tmp_path):
    # six pinned older than its newest: the build node installed what was asked.
    repo = six_repo(tmp_path / "repo", "v1")
    with Watch(cluster, splatform.data) as watch:
        t0 = time.monotonic()
        r = splatform.push("alice", repo, "built")
        first = time.monotonic() - t0
    assert r.code == 0, r.text
    assert "[www] I am n3, and I will be your builder today" in r.text, r.text
    assert "hook on n3 as uid " in r.text and "dotcloud-build-agent.py" in r.text, r.text
    assert "hook on n3 as uid 0 " not in r.text, r.text
    assert "token-unreadable" in r.text, r.text
    assert watch.seen == {"n3"}
    assert build_services(cluster, splatform.data) == []
    status, body, _ = splatform.get("built.localhost")
    assert status == 200 and body.startswith("v1 six 1.15.0 "), body
    # Another push of the same requirements reuses the cache entry the first filled.
    (repo / "wsgi.py").write_text(SIX_APP.format(version="v2"))
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", "v2"], check=True)
    t0 = time.monotonic()
    r = splatform.push("alice", repo, "built")
    second = time.monotonic() - t0
    assert r.code == 0, r.text
    assert "[www] I am n3, and I will be your builder today" in r.text, r.text
    assert "reusing the virtualenv of an earlier build" in r.text, r.text
    status, body, _ = splatform.get("built.localhost")
    assert status == 200 and body.startswith("v2 six 1.15.0 "), body
    print(f"push on n3: {first:.1f} s, again with the cache: {second:.1f} s")


def test_a_failed_build_on_a_build_node_says_why(splatform, cluster, n3_builds, tmp_path):
    repo = six_repo(tmp_path / "repo", "v1", hook="echo boom-from-the-hook; exit 3")
    r = splatform.push("alice", repo, "failing")
    assert r.code != 0, r.text
    assert "[www] I am n3, and I will be your builder today" in r.text, r.text
    assert "boom-from-the-hook" in r.text, r.text
    assert "prebuild" in r.text, r.text
    assert build_services(cluster, splatform.data) == []


def test_without_build_nodes_the_manager_builds(splatform, cluster, tmp_path):
    assert not any(n.labels.get("role") == "build" for n in cluster.nodes().values())
    repo = git_repo(tmp_path / "repo", node_app("v1", instances=1))
    r = splatform.push("alice", repo, "onmanager")
    assert r.code == 0, r.text
    assert "[www] I am n1, and I will be your builder today" in r.text, r.text
    status, body, _ = splatform.get("onmanager.localhost")
    assert status == 200 and body.startswith("v1 "), body


def test_the_builder_is_a_labelled_node_else_the_manager(cluster):
    assert build_nodes.builder(cluster.client) is None
    assert build_nodes.manager_name(cluster.client) == "n1"
    set_role(cluster, "n3", "build")
    try:
        assert build_nodes.builder(cluster.client).hostname == "n3"
    finally:
        set_role(cluster, "n3", None)


def agent_on_n3(cluster, tmp_path, **kwargs) -> build_nodes.AgentExecutor:
    release, cache = tmp_path / "release", tmp_path / "cache"
    release.mkdir(exist_ok=True)
    cache.mkdir(exist_ok=True)
    options = dict(data=tmp_path, name=f"hb-build-nodes-{os.getpid()}-{tmp_path.name[-12:]}",
                   image=IMAGE, image_id=docker_engine.image_id(cluster.client, IMAGE),
                   user="0:0", limits=None, release=release, cache=cache,
                   # As docker_build gives them (the build containers' labels).
                   labels={docker_engine.LABEL_DATA: docker_engine.data_id(tmp_path),
                           "dotcloud.app": "app", "dotcloud.build": "www"},
                   registry=cluster.registry)
    return build_nodes.AgentExecutor(cluster.client, cluster.nodes()["n3"],
                                     **{**options, **kwargs})


def ask(executor, request: dict) -> dict:
    with socket.create_connection((executor.node.addr, executor.port), timeout=10) as conn:
        conn.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(conn.makefile("rb").readline())


def test_the_build_agent_refuses_a_request_without_the_token(cluster, tmp_path):
    executor = agent_on_n3(cluster, tmp_path)
    executor.start()
    try:
        assert ask(executor, {"op": "hello"}) == {"error": "refused: no valid token"}
        assert ask(executor, {"op": "run", "argv": ["id"], "token": "guess"}) \
            == {"error": "refused: no valid token"}
        assert ask(executor, {"op": "hello", "token": executor.token})["hostname"] == "n3"
    finally:
        executor.close()
    assert build_services(cluster, tmp_path) == []


def test_a_build_node_gets_the_directories_and_gives_back_what_steps_did(cluster, tmp_path):
    executor = agent_on_n3(cluster, tmp_path)
    release, cache = tmp_path / "release", tmp_path / "cache"
    (release / "kept").write_text("kept\n")
    (release / "removed").write_text("removed\n")
    (cache / "python" / "unused").mkdir(parents=True)
    (cache / "python" / "unused" / "big").write_text("not the step's\n")
    executor.start()
    lines: list[str] = []
    try:
        step = (f"cat {release}/kept; hostname; echo made > {release}/new; rm {release}/removed;"
                f" ls {cache}/python; mkdir -p {cache}/python/entry;"
                f" echo filled > {cache}/python/entry/file")
        assert executor.run(["sh", "-c", step], cwd=Path("/"), env={}, timeout=60,
                            on_line=lines.append) == 0
        # Only the cache entries a step names go; the rest of the cache stays here.
        assert lines == ["kept", "n3"]
        assert sorted(p.name for p in release.iterdir()) == ["kept", "new"]
        assert (cache / "python" / "entry" / "file").read_text() == "filled\n"
        assert (cache / "python" / "unused" / "big").exists()
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
        # A failing step's status and output; one past its deadline is stopped.
        lines.clear()
        assert executor.run(["sh", "-c", "echo failing; exit 7"], cwd=Path("/"), env={},
                            timeout=60, on_line=lines.append) == 7
        assert lines == ["failing"]
        with pytest.raises(TimeoutError):
            executor.run(["sleep", "30"], cwd=Path("/"), env={}, timeout=1, on_line=print)
        with pytest.raises(OSError):
            executor.run(["true"], cwd=Path("/no/such/dir"), env={}, timeout=10, on_line=print)
        assert executor.run(["true"], cwd=Path("/"), env={}, timeout=10, on_line=print) == 0
    finally:
        executor.close()
    assert build_services(cluster, tmp_path) == []


def test_a_base_image_without_python3_builds_on_the_manager(cluster, n3_builds, monkeypatch,
                                                            tmp_path):
    monkeypatch.setattr(build_nodes, "AGENT_PYTHON", "no-such-python3")
    monkeypatch.setenv("DOCKER_HOST", cluster.docker_host)
    from dotcloud.settings import Settings
    (tmp_path / "data").mkdir()
    settings = Settings(data=tmp_path / "data", runtime="swarm", registry=cluster.registry,
                        docker_python_image=IMAGE)
    release = tmp_path / "data" / "releases" / "app" / "v1"
    release.mkdir(parents=True)
    with docker_build.executor_for(settings, "app", "www", "python", release) as executor:
        assert isinstance(executor, docker_build.DockerExecutor)
        assert executor.builder == "n1"
    assert build_services(cluster, settings.data) == []


def test_leftovers_of_a_dead_pipeline_are_swept(cluster, monkeypatch, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    monkeypatch.setattr(build_nodes, "owner", lambda: f"{socket.gethostname()}:{dead.pid}")
    executor = agent_on_n3(cluster, tmp_path)
    executor.start()
    live = agent_on_n3(cluster, tmp_path, name=f"hb-build-live-{os.getpid()}")
    monkeypatch.undo()
    live.start()
    try:
        executor.made = []      # as a killed pipeline: nothing removed
        executor.service = None
        # The instances' sweep never takes a build service for an instance's.
        assert swarm.sweep(cluster.client, tmp_path, keep=set()) == []
        removed = build_nodes.sweep(cluster.client, tmp_path, max_age=3600)
        assert executor.name in removed and f"{executor.name}-token" in removed
        assert f"{executor.name}-agent" in removed
        assert [s.name for s in build_services(cluster, tmp_path)] == [live.name]
        assert build_nodes.sweep(cluster.client, tmp_path, max_age=3600) == []
        # Older than a build may be: swept whoever made it.
        assert live.name in build_nodes.sweep(cluster.client, tmp_path, max_age=0)
    finally:
        live.close()
    assert build_services(cluster, tmp_path) == []


def test_a_step_killed_for_memory_on_a_build_node_says_so(cluster, tmp_path):
    from dotcloud.resources import Limits
    executor = agent_on_n3(cluster, tmp_path, limits=Limits(memory_bytes=64 * 1024 ** 2))
    executor.start()
    try:
        with pytest.raises(MemoryError, match=r"out of memory \(limit 64M\)"):
            executor.run(["python3", "-c", "hog = b'x' * (256 * 1024 ** 2)"], cwd=Path("/"),
                         env={}, timeout=60, on_line=print)
        # The agent lives on: the step went first.
        assert executor.run(["true"], cwd=Path("/"), env={}, timeout=10, on_line=print) == 0
    finally:
        executor.close()


def test_the_node_base_image_runs_the_agent_too(cluster, tmp_path):
    image = os.environ.get("DOTCLOUD_DOCKER_NODE_IMAGE", "node:22-slim")
    executor = agent_on_n3(cluster, tmp_path, image=image,
                           image_id=docker_engine.image_id(cluster.client, image))
    executor.start()
    lines: list[str] = []
    try:
        assert executor.run(["node", "-e", "console.log('node here')"], cwd=Path("/"),
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, timeout=30,
                            on_line=lines.append) == 0
        assert lines == ["node here"]
    finally:
        executor.close()
