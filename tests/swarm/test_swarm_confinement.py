"""Issue 16 under the swarm runtime: a task runs as the app's uid, confined as
the docker runtime's containers (read-only root, a tmpfs /tmp, no
capabilities) under its service's limits. The service definition is checked
against the SDK's own translation (no swarm needed), and a push to the test
swarm shows it on the task's container on its node."""
import time

import docker
import pytest
from docker.models.services import _get_create_service_kwargs
from platform_helpers import git_repo
from swarmkit import ROOT, node_app

from dotcloud import appusers
from dotcloud.resources import Limits
from dotcloud.settings import Settings, load
from runtime import docker_engine, swarm, swarm_launcher

MiB = 1024 * 1024
LIMITS = Limits(memory_bytes=96 * MiB, cpus=0.5, processes=80)


def test_wrap_passes_the_uid_limits_and_scratch(tmp_path):
    s = Settings(data=tmp_path / "data", runtime="swarm", registry="10.213.0.11:5000")
    procs = {"web": {"argv": ["python3", "server.py"], "cwd": "/src", "env": {}}}
    wrapped = swarm_launcher.wrap(s, app="app", service="www", instance="g1-www.0",
                                  processes=procs, image="sha256:abc", user=(60001, 60001),
                                  limits=LIMITS)
    opts = swarm_launcher.parse(wrapped["web"]["argv"][2:])
    assert opts.user == "60001:60001"
    assert (opts.memory, opts.cpus, opts.pids) == (96 * MiB, 0.5, 80)
    # The release is in the image at its host path: a tmpfs on /tmp would hide
    # a data directory under /tmp.
    assert opts.scratch == ("/var/tmp" if s.data.resolve().is_relative_to("/tmp") else "/tmp")
    unlimited = swarm_launcher.parse(swarm_launcher.wrap(
        s, app="app", service="www", instance="g1-www.0", processes=procs,
        image="x")["web"]["argv"][2:])
    assert (unlimited.memory, unlimited.cpus, unlimited.pids) == (None, None, None)


def test_the_service_definition_is_confined_and_limited(tmp_path):
    try:
        client = docker_engine.connect()     # only asked its API version
    except docker_engine.EngineError as e:
        pytest.skip(str(e))
    opts = swarm_launcher.parse([
        "--service", "svc", "--image", "img", "--workdir", "/src", "--user", "60001:60001",
        "--scratch", "/var/tmp", "--memory", str(96 * MiB), "--cpus", "0.5", "--pids", "80",
        "--", "python3", "server.py"])
    launcher = swarm_launcher.Launcher(opts, {"HOME": "/data/homes/app/g1-www.0", "A": "b"})
    launcher.client = client
    try:
        definition = launcher._definition("img")
    finally:
        client.close()
    spec = _get_create_service_kwargs("create", {"image": "img", **definition})
    container = spec["task_template"]["ContainerSpec"]
    assert container["User"] == "60001:60001"
    assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"]
    assert {(m["Target"], m["Type"]) for m in container["Mounts"]} == \
        {("/data/homes/app/g1-www.0", "tmpfs"), ("/var/tmp", "tmpfs")}
    assert "TMPDIR=/var/tmp" in container["Env"] and "A=b" in container["Env"]
    assert spec["task_template"]["Resources"]["Limits"] == \
        {"MemoryBytes": 96 * MiB, "NanoCPUs": 500_000_000, "Pids": 80}


@pytest.mark.swarm
def test_a_task_runs_confined_as_the_app_under_its_limits(splatform, cluster, tmp_path):
    extra = "  limits: {memory: 96M, cpus: 0.5, processes: 80}\n"
    repo = git_repo(tmp_path / "conf", node_app("v1", instances=1, extra=extra))
    r = splatform.push("alice", repo, "confined")
    assert r.code == 0, r.text
    [node] = cluster.tasks(splatform.data, "confined")
    [service] = [s for s in swarm.services(cluster.client, splatform.data)
                 if s.attrs["Spec"]["Labels"].get(swarm.LABEL_APP) == "confined"]
    [task] = [t for t in service.tasks() if t["Status"]["State"] == "running"]
    engine = docker.DockerClient(base_url=f"unix://{ROOT}/{node}/docker.sock", timeout=60)
    try:
        attrs = engine.containers.get(task["Status"]["ContainerStatus"]["ContainerID"]).attrs
    finally:
        engine.close()
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == \
        (96 * MiB, 500_000_000, 80)
    user = appusers.for_app(load(splatform.data, runtime="swarm"), "confined")
    expected = f"{user.uid}:{user.gid}" if user else docker_engine.user()
    assert attrs["Config"]["User"] == expected
    # And it serves: as that user, from the read-only image.
    deadline = time.monotonic() + 30
    while splatform.get("confined.localhost")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
