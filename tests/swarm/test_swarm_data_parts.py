"""The swarm runtime's data services without a swarm: the node a data
service is pinned to (and the one-line refusals), and what the shim runs for
a data instance (the launcher with the data image, its volume, its node)."""
from pathlib import Path

import pytest

from dotcloud.desired import DataService, InstanceSpec, ProcessSpec
from dotcloud.settings import Settings
from hooks import datastores
from runtime import reconcile, swarm, swarm_data, swarm_launcher


def settings(tmp_path, **kw) -> Settings:
    return Settings(data=tmp_path / "data", runtime="swarm", **kw)


def node(name: str, role: str = "worker", state: str = "ready", **labels) -> swarm.Node:
    return swarm.Node(id=f"id-{name}", hostname=name, addr=f"10.0.0.{name[-1]}", role=role,
                      state=state, availability="active", labels=labels)


@pytest.fixture
def swarm_of(monkeypatch):
    """Fake the swarm's answers: its nodes and the platform's tasks on each."""
    def make(nodes, load=None):
        monkeypatch.setattr(swarm, "nodes", lambda client: nodes)
        monkeypatch.setattr(swarm, "placements", lambda client, data: load or {})
    return make


NODES = [node("n1", "manager"), node("n2", flavor="live"), node("n3", flavor="live")]


def test_a_new_data_service_goes_to_the_least_busy_fitting_node_and_stays(tmp_path, swarm_of):
    s = settings(tmp_path, registry="10.0.0.1:5000")
    swarm_of(NODES, {"n1": [{}], "n2": [{}, {}], "n3": [{}]})
    assert swarm_data.pin(s, None, "app", "db", {"flavor": "live"}).hostname == "n3"
    recorded = s.paths.service_data("app", "db")
    assert (recorded / "node").read_text().strip() == "id-n3"
    volume = (recorded / "volume").read_text().strip()
    assert volume.startswith("dc-") and "-app-db-" in volume
    # Later: the recorded node, however busy, even down (it waits for it there).
    swarm_of([node("n1", "manager"), node("n2", flavor="live"),
              node("n3", state="down", flavor="live")], {"n3": [{}] * 9})
    assert swarm_data.pin(s, None, "app", "db", {"flavor": "live"}).hostname == "n3"
    assert swarm_data.pin(s, None, "app", "db", {}).hostname == "n3"
    assert swarm_data.volume_name(s, "app", "db") == volume


def test_without_a_registry_data_services_go_to_the_manager(tmp_path, swarm_of):
    swarm_of(NODES, {"n1": [{}] * 5})
    assert swarm_data.pin(settings(tmp_path), None, "app", "db", {}).hostname == "n1"


@pytest.mark.parametrize("labels, message", [
    ({"flavor": "nowhere"}, "service 'db': no node of the swarm with the labels flavor=nowhere "
                            "can hold its data"),
])
def test_no_node_fits_is_one_line_and_records_nothing(tmp_path, swarm_of, labels, message):
    s = settings(tmp_path, registry="10.0.0.1:5000")
    swarm_of(NODES)
    with pytest.raises(swarm.SwarmError) as info:
        swarm_data.pin(s, None, "app", "db", labels)
    assert str(info.value) == message
    assert not s.paths.service_data("app", "db").exists()


def test_a_recorded_node_gone_or_lacking_the_labels_is_refused(tmp_path, swarm_of):
    s = settings(tmp_path, registry="10.0.0.1:5000")
    swarm_of(NODES)
    assert swarm_data.pin(s, None, "app", "db", {}).hostname == "n1"
    with pytest.raises(swarm.SwarmError) as info:
        swarm_data.pin(s, None, "app", "db", {"flavor": "live"})
    assert str(info.value) == ("service 'db': its data is on node n1, which lacks the "
                               "placement labels flavor=live: label it, or leave the placement "
                               "as it was")
    swarm_of(NODES[1:])
    with pytest.raises(swarm.SwarmError) as info:
        swarm_data.pin(s, None, "app", "db", {})
    assert "its node id-n1, which holds its data (volume dc-" in str(info.value)
    assert "is no longer in the swarm" in str(info.value)


def test_a_data_server_on_a_node_that_is_down_is_not_replaced():
    swarm_data.check_replaceable("db", node("n2"))
    with pytest.raises(swarm.SwarmError) as info:
        swarm_data.check_replaceable("db", node("n2", state="down"))
    assert str(info.value) == ("service 'db': its node n2, which holds its data, is down: its "
                               "server cannot be replaced now; push again when the node is back")


def data_spec(s: Settings, kind: str = "postgresql") -> InstanceSpec:
    root = s.paths.service_data("app", "db")
    root.mkdir(parents=True)
    datastores.prepare(s, "app", "db", kind, on_host=False)
    (root / "node").write_text("id-n2\n")
    (root / "volume").write_text("dc-x-app-db-1234\n")
    return InstanceSpec(
        app="app", service="db", number=0, generation=4, port=24567, service_type=kind,
        processes=[ProcessSpec(kind, ["/usr/lib/postgresql/15/bin/postgres"], "/src")],
        env={"HOME": "/homes/app/g4-db.0", "PATH": "/usr/bin"}, home="/homes/app/g4-db.0",
        log="app/db.0.log", data_service=DataService(kind, 4), user=(60001, 60001),
        node="id-n2", placement={"flavor": "live"})


def test_a_data_instance_runs_the_data_image_on_its_node_with_its_volume(tmp_path):
    s = settings(tmp_path, registry="10.0.0.1:5000")
    spec = data_spec(s)
    wrapped = reconcile.shim_processes(s, spec, dict(spec.env))
    opts = swarm_launcher.parse(wrapped["postgresql"]["argv"][2:])
    assert opts.image == s.docker_data_image
    assert opts.constraint == ["node.labels.flavor==live", "node.id==id-n2"]
    assert opts.volume == "dc-x-app-db-1234:/data" and opts.stop_signal == "SIGINT"
    assert opts.user == "60001:60001" and opts.workdir == "/data"
    assert opts.command[:2] == ["/bin/sh", "-c"] and opts.command[-2:] == ["postgresql", "24567"]
    env = wrapped["postgresql"]["env"]
    root = s.paths.service_data("app", "db")
    assert env[swarm_data.PASSWORD_ENV] == (root / "password").read_text().strip()
    assert env[swarm_data.KEY_ENV].startswith("-----BEGIN")
    # Nothing of the server on the manager: no cluster, no config.
    assert not (root / "pgdata").exists() and not (root / "redis.conf").exists()


def test_the_shim_of_a_swarm_data_instance_keeps_the_platforms_uid(tmp_path):
    # It runs the launcher, which needs the engine: no cgroup, no user to drop to.
    s = settings(tmp_path, registry="10.0.0.1:5000")
    spec = data_spec(s, "redis")
    assert not reconcile.on_host(s, spec)
    assert reconcile.on_host(Settings(data=tmp_path / "data", runtime="docker"), spec)
    opts = swarm_launcher.parse(
        reconcile.shim_processes(s, spec, dict(spec.env))["redis"]["argv"][2:])
    assert opts.stop_signal is None and opts.command[-2:] == ["redis", "24567"]


def test_apps_using_data_on_a_node_spread(tmp_path):
    env = datastores.connection_env("db", "postgresql", 24567,
                                    datastores.Credentials("root", "pw"), "10.0.0.2")
    assert env["DOTCLOUD_DB_POSTGRESQL_URL"] == "postgresql://root:pw@10.0.0.2:24567/postgres"
    wrapped = swarm_launcher.wrap(
        settings(tmp_path, registry="10.0.0.1:5000"), app="app", service="www",
        instance="g1-www.0", image="x",
        processes={"web": {"argv": ["app"], "cwd": "/src", "env": env}})
    assert swarm_launcher.parse(wrapped["web"]["argv"][2:]).constraint == []


def test_volume_names_differ_per_data_directory_and_incarnation(tmp_path):
    a, b = settings(tmp_path / "a"), settings(tmp_path / "b")
    assert swarm_data.volume_name(a, "app", "db") != swarm_data.volume_name(b, "app", "db")
    first = swarm_data.volume_name(a, "app", "db")
    (a.paths.service_data("app", "db") / "volume").unlink()    # the app destroyed, made again
    assert swarm_data.volume_name(a, "app", "db") != first
    assert Path(a.paths.service_data("app", "db") / "volume").exists()
