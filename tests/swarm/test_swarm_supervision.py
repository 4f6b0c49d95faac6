"""Supervision on the swarm: a launcher killed -9 is replaced by its shim and
the new one adopts the running service (the task keeps running, nothing is
lost); what a dead launcher left behind is swept."""
import os
import signal
import subprocess
import time

import pytest
from loadgen import Load
from platform_helpers import git_repo
from swarmkit import node_app

from dotcloud import placement
from dotcloud.settings import load as settings_of
from dotcloud.state import Store
from runtime import docker_engine, swarm, swarm_sweeper

pytestmark = pytest.mark.swarm


def launcher_pid(service: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"swarm_launcher.py .*--service {service} "],
                         capture_output=True, text=True).stdout.split()
    assert len(out) == 1, out
    return int(out[0])


def test_killed_launcher_is_replaced_and_adopts_its_service(splatform, cluster, tmp_path):
    repo = git_repo(tmp_path / "adopt", node_app("v1", instances=2))
    r = splatform.push("alice", repo, "adopt")
    assert r.code == 0, r.text
    service = next(s for s in swarm.services(cluster.client, splatform.data)
                   if s.attrs["Spec"]["Labels"].get(swarm.LABEL_APP) == "adopt")
    tasks = {t["ID"] for t in service.tasks(filters={"desired-state": "running"})}
    pid = launcher_pid(service.name)
    with Load(splatform.http_port, "adopt.localhost", clients=4,
              address=splatform.address) as load:
        load.wait_ok(10)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if launcher_pid(service.name) != pid:
                    break
            except AssertionError:
                pass                 # none yet
            assert time.monotonic() < deadline, "no new launcher"
            time.sleep(0.2)
        load.wait_ok(load.ok + 20)
    assert load.failures == 0, load.errors[:5]
    service.reload()
    assert {t["ID"] for t in service.tasks(filters={"desired-state": "running"})} == tasks
    label = service.attrs["Spec"]["Labels"][swarm.LABEL_INSTANCE].split("-", 1)[1]
    log = (splatform.data / "logs" / "adopt" / f"{label}.log").read_text()
    assert "[swarm] adopted the running service" in log


def test_sweep_removes_only_this_platforms_services_nothing_runs(splatform, cluster,
                                                                 monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", cluster.docker_host)
    settings = settings_of(splatform.data)
    store = Store(settings.paths.db)
    ours = {docker_engine.LABEL_DATA: docker_engine.data_id(splatform.data),
            swarm.LABEL_INSTANCE: "g999-gone.0"}
    theirs = {docker_engine.LABEL_DATA: "0000000000", swarm.LABEL_INSTANCE: "g999-gone.0"}
    made = []
    for labels, data in ((ours, splatform.data), (theirs, splatform.data / "other")):
        name = swarm.service_name(data, "g999-gone.0", "web")
        cluster.client.services.create(settings.docker_python_image, ["sleep", "600"],
                                       name=name, labels=labels, networks=["host"])
        made.append(name)
    placement.write(placement.path(splatform.data, "g999-gone.0"),
                    placement.Placement("n2", "10.213.0.12", "running"))
    running = swarm_sweeper.instances_to_keep(settings, store)
    live = {s.name for s in swarm.services(cluster.client, splatform.data)
            if s.attrs["Spec"]["Labels"].get(swarm.LABEL_INSTANCE) in running}
    tasks = {c.name for c in cluster.client.containers.list(
        filters={"label": "com.docker.swarm.task.id"})}
    try:
        removed = swarm_sweeper.sweep_once(settings, store)
        assert made[0] in removed and made[1] not in removed
        left = {s.name for s in cluster.client.services.list()}
        assert made[0] not in left and made[1] in left
        assert live <= left                          # the running apps' services stay
        assert not tasks & set(removed)              # and the swarm's containers
        assert placement.of(splatform.data, '{"home": "/x/g999-gone.0"}') is None
    finally:
        swarm.remove_service(cluster.client, made[1])


def test_scale_restart_logs_and_destroy_work_on_the_swarm(splatform, cluster, tmp_path,
                                                          monkeypatch):
    repo = git_repo(tmp_path / "ops", node_app("v1", instances=1))
    r = splatform.push("alice", repo, "ops")
    assert r.code == 0, r.text
    assert len(cluster.tasks(splatform.data, "ops")) == 1
    r = splatform.ssh("alice", "logs", "ops", "-n", "50")
    assert r.code == 0, r.text
    assert "[swarm] running on n" in r.out
    with Load(splatform.http_port, "ops.localhost", clients=4,
              address=splatform.address) as load:
        load.wait_ok(10)
        r = splatform.ssh("alice", "scale", "ops", "www=3")
        assert r.code == 0, r.text
        r = splatform.ssh("alice", "restart", "ops")
        assert r.code == 0, r.text
        load.wait_ok(10)
        nodes = cluster.tasks(splatform.data, "ops")
        assert len(nodes) == 3 and len(set(nodes)) >= 2, nodes
        # In place, one at a time: on two nodes or more, one at least is not
        # the manager's, and its check must go to its node's address; the
        # next task starts once the old one ended there, not beside it.
        r = splatform.ssh("alice", "restart", "ops", "www")
        assert r.code == 0, r.text
        assert r.out.count("Restarted") == 3, r.text
        load.wait_ok(10)
    assert load.failures == 0, load.errors[:5]
    mine = {"label": [f"{docker_engine.LABEL_DATA}={docker_engine.data_id(splatform.data)}",
                       "dotcloud.app=ops"]}
    assert cluster.client.images.list(filters=mine)
    r = splatform.ssh("alice", "destroy", "ops", "--force")
    assert r.code == 0, r.text
    deadline = time.monotonic() + 60
    while cluster.tasks(splatform.data, "ops"):
        assert time.monotonic() < deadline, "the destroyed app's services are still there"
        time.sleep(0.5)
    # Its release images on the manager go with the next sweep.
    monkeypatch.setenv("DOCKER_HOST", cluster.docker_host)
    settings = settings_of(splatform.data)
    swarm_sweeper.sweep_once(settings, Store(settings.paths.db))
    assert not cluster.client.images.list(filters=mine)
