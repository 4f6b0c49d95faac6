"""The runtime's sweeper removes the containers no instance will use again
and keeps those of instances that should run."""
import pytest

from dotcloud.settings import load
from dotcloud.state import Store
from runtime import docker_engine, docker_launcher, sweeper

pytestmark = pytest.mark.docker


def test_sweep_once_keeps_wanted_instances_and_removes_orphans(engine, tmp_path):
    settings = load(tmp_path / "data", runtime="docker")
    store = Store(settings.db_path)
    procs = {"web": {"argv": ["python3", "-c", "pass"], "cwd": str(tmp_path), "env": {}}}
    wrapped = docker_launcher.wrap(settings, app="sw", service_type="python",
                                   instance="g1-www.0", processes=procs, home=tmp_path)
    inst = store.add_instance("sw", 1, "www", 0, 20001, {"processes": wrapped})
    store.set_desired([inst.id], "run")
    wanted = docker_launcher.container_names({"processes": wrapped})[0]
    orphan = docker_engine.container_name(settings.data, "sw", "g0-www.0", "web")
    label = {docker_engine.LABEL_DATA: docker_engine.data_id(settings.data)}
    for name, instance in ((wanted, "g1-www.0"), (orphan, "g0-www.0")):
        engine.containers.create("python:3.12-slim", ["true"], name=name, network_mode="host",
                                 labels=dict(label, **{"dotcloud.instance": instance}))
    try:
        assert sweeper.containers_to_keep(settings, store) == {wanted}
        assert sweeper.sweep_once(settings, store) == [orphan]
        left = {c.name for c in engine.containers.list(all=True)}
        assert wanted in left and orphan not in left
        store.set_desired([inst.id], "stop")     # no shim alive either: nothing to keep
        assert sweeper.sweep_once(settings, store) == [wanted]
    finally:
        for name in (wanted, orphan):
            docker_engine.remove(engine, name)
