"""The runtime's sweeper removes the containers no instance will use again
and keeps those of instances that should run."""
import pytest

from dotcloud.desired import InstanceSpec, ProcessSpec
from dotcloud.settings import load
from dotcloud.state import Store
from runtime import docker_engine, docker_launcher, sweeper

pytestmark = pytest.mark.docker


def test_sweep_once_keeps_wanted_instances_and_removes_orphans(engine, tmp_path):
    settings = load(tmp_path / "data", runtime="docker")
    store = Store(settings.paths.db)
    spec = InstanceSpec(app="sw", service="www", number=0, generation=1, port=20001,
                        service_type="python",
                        processes=[ProcessSpec("web", ["python3", "-c", "pass"], str(tmp_path))],
                        env={}, home=str(tmp_path / "g1-www.0"), log="sw/www.0.log")
    inst = store.add_instance("sw", 1, "www", 0, 20001, spec)
    store.set_desired([inst.id], "run")
    [wanted] = docker_launcher.container_names(settings, spec).values()
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
