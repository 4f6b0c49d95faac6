"""The swarm runtime's pure parts and its error paths, without a swarm:
the launcher's argv, service names, placements, the route table built from
them, the registry setting, and what `up` and `nodes` say when the engine
cannot be a swarm manager."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildpacks.buildfile import BuildfileError, ServiceSpec, parse
from dotcloud import placement
from dotcloud.errors import UsageError
from dotcloud.settings import Settings, load
from runtime import swarm, swarm_launcher

ROOT = Path(__file__).resolve().parents[2]


def settings(tmp_path, **kw) -> Settings:
    return Settings(data=tmp_path / "data", runtime="swarm", **kw)


def procs(src: str) -> dict:
    return {"web": {"argv": ["/venv/bin/python", "-m", "gunicorn", "--bind", "127.0.0.1:2345",
                             "wsgi"], "cwd": src, "env": {"PORT": "2345"}},
            "jobs": {"argv": ["/bin/sh", "-c", "echo 127.0.0.1:2345"], "cwd": src, "env": {}}}


def test_wrap_runs_each_process_as_a_service_through_the_launcher(tmp_path):
    s = settings(tmp_path, registry="10.213.0.11:5000")
    wrapped = swarm_launcher.wrap(s, app="app", service="www", instance="g2-www.0",
                                  processes=procs("/src"), image="sha256:abc",
                                  constraints={"flavor": "live"})
    web = swarm_launcher.parse(wrapped["web"]["argv"][2:])
    jobs = swarm_launcher.parse(wrapped["jobs"]["argv"][2:])
    assert wrapped["web"]["argv"][1] == str(Path(swarm_launcher.__file__).resolve())
    assert web.image == "sha256:abc" and web.registry == "10.213.0.11:5000"
    assert web.constraint == jobs.constraint == ["node.labels.flavor==live"]
    assert web.service != jobs.service
    assert web.service == swarm.service_name(s.data, "g2-www.0", "web")
    # Only the first process says where the instance runs (the router needs one address).
    assert web.placement == str(placement.path(s.data, "g2-www.0")) and jobs.placement is None
    # Reachable from the router on another node; a word that only looks like one is kept.
    assert web.command[-2:] == ["0.0.0.0:2345", "wsgi"]
    assert jobs.command == ["/bin/sh", "-c", "echo 127.0.0.1:2345"]
    assert "dotcloud.instance=g2-www.0" in web.label
    # The container's directory is the service's; the launcher's own is one the
    # manager has (a Dockerfile's WORKDIR, /src here, need not exist there).
    assert web.workdir == "/src" and wrapped["web"]["cwd"] == str(s.data)


def test_without_a_registry_instances_stay_on_the_manager(tmp_path):
    wrapped = swarm_launcher.wrap(settings(tmp_path), app="app", service="www",
                                  instance="g1-www.0", processes=procs("/src"), image="x")
    assert swarm_launcher.parse(wrapped["web"]["argv"][2:]).constraint == ["node.role==manager"]


def test_reachable_rewrites_loopback_binds_only():
    assert swarm_launcher.reachable(["gunicorn", "--bind", "127.0.0.1:80", "-w", "2"]) == \
        ["gunicorn", "--bind", "0.0.0.0:80", "-w", "2"]
    assert swarm_launcher.reachable(["serve", "--bind", "127.0.0.1", "--port", "80"]) == \
        ["serve", "--bind", "0.0.0.0", "--port", "80"]
    assert swarm_launcher.reachable(["echo", "127.0.0.1", "localhost:x"]) == \
        ["echo", "127.0.0.1", "localhost:x"]


def test_service_names_are_dns_labels_per_data_directory(tmp_path):
    a = swarm.service_name(tmp_path / "a", "g1-www.0", "web")
    b = swarm.service_name(tmp_path / "b", "g1-www.0", "web")
    assert a != b and a.startswith("dc-") and "." not in a and "_" not in a
    long = swarm.service_name(tmp_path / "a", "g123-" + "x" * 80 + ".0", "web")
    assert len(long) <= 63 and long != swarm.service_name(tmp_path / "a", "g124-" + "x" * 80
                                                          + ".0", "web")


def test_placement_says_where_an_instance_is(tmp_path):
    data = tmp_path / "data"
    spec = '{"home": "/d/homes/app/g3-www.1"}'
    assert placement.address(data, spec) == placement.LOCAL       # no file: this host
    placement.write(placement.path(data, "g3-www.1"),
                    placement.Placement("n2", "10.213.0.12", "running", "t1"))
    assert placement.address(data, spec) == "10.213.0.12"
    assert placement.of(data, spec).node == "n2"
    placement.write(placement.path(data, "g3-www.1"),
                    placement.Placement(None, None, "placing"))
    assert placement.address(data, spec) is None                  # no traffic for now
    placement.forget(data, "g3-www.1")
    assert placement.address(data, spec) == placement.LOCAL
    assert placement.address(data, None) == placement.LOCAL       # a row that cannot be read


def test_registry_setting_is_checked_with_one_line(tmp_path):
    (tmp_path / "config.yml").write_text("registry: https://registry.example/v2\n")
    with pytest.raises(UsageError) as e:
        load(tmp_path)
    assert "config.yml: 'registry' must be HOST:PORT" in str(e.value)
    assert "\n" not in str(e.value)
    (tmp_path / "config.yml").write_text("registry: 10.213.0.11:5000\n")
    assert load(tmp_path).registry == "10.213.0.11:5000"


def cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    return subprocess.run([sys.executable, "-m", "dotcloud.cli", "--data", str(tmp_path / "d"),
                           *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=60)


def test_up_on_swarm_without_an_engine_says_so_in_one_line(tmp_path):
    r = cli(tmp_path, "up", "--runtime", "swarm", "--ssh-port", "0", "--http-port", "0",
            "--https-port", "0")
    assert r.returncode == 1
    assert r.stderr.startswith("dotcloud-server: --runtime swarm: the docker engine is not "
                               "reachable"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d" / "run" / "up.json").exists()     # nothing started


def test_nodes_without_an_engine_says_so_in_one_line(tmp_path):
    r = cli(tmp_path, "nodes")
    assert r.returncode == 1
    assert "the docker engine is not reachable" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_placement_in_the_build_file_is_node_labels():
    bf = parse("www:\n  type: python\n  placement: {flavor: live, disk: ssd}\n")
    spec = bf.services["www"]
    assert dict(spec.placement) == {"flavor": "live", "disk": "ssd"}
    assert ServiceSpec.from_dict(spec.to_dict()) == spec
    # Files without it keep the definition they had (no key at all).
    assert "placement" not in parse("www:\n  type: python\n").services["www"].to_dict()


@pytest.mark.parametrize("text, message", [
    ("www:\n  type: python\n  placement: live\n", "line 3: service 'www': 'placement' must be a mapping"),
    ("www:\n  type: python\n  placement: {'fla vor': live}\n",
     "line 3: service 'www': 'placement': invalid node label 'fla vor'"),
    ("www:\n  type: python\n  placement:\n    flavor: [live]\n",
     "line 4: service 'www': 'placement': 'flavor' must be a single value"),
    ("www:\n  type: python\n  placement: {flavor: 'a b'}\n", "invalid label value 'a b'"),
])
def test_bad_placement_is_refused_with_its_line(text, message):
    with pytest.raises(BuildfileError) as info:
        parse(text)
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_an_app_using_the_platforms_data_servers_stays_on_the_manager(tmp_path):
    processes = procs("/src")
    processes["web"]["env"] = {"DOTCLOUD_DB_POSTGRESQL_HOST": "127.0.0.1", "PORT": "2345"}
    wrapped = swarm_launcher.wrap(settings(tmp_path, registry="10.213.0.11:5000"), app="app",
                                  service="www", instance="g1-www.0", processes=processes,
                                  image="x", constraints={"flavor": "live"})
    assert swarm_launcher.parse(wrapped["web"]["argv"][2:]).constraint == \
        ["node.labels.flavor==live", "node.role==manager"]
