"""The typed desired state: manifests and instance specs survive their files
and columns, read what older versions wrote, and refuse the rest in one line."""
import json
from dataclasses import replace
from types import MappingProxyType

import pytest

from dotcloud.desired import (DataService, Desired, InstanceSpec, InstanceState, Kind, Limits,
                              Manifest, ManifestError, ProcessSpec, ServiceManifest, SpecError)

# What hooks/build.py wrote before the manifest was typed (a release on disk).
OLD_MANIFEST = {
    "revision": "abc1234", "built": 1700000000.5,
    "services": {
        "www": {"spec": {"name": "www", "type": "python", "approot": ".",
                         "environment": {"A": "1"}, "instances": 2,
                         "healthcheck": {"path": "/up", "timeout": 5, "interval": 1}},
                "src": "/d/releases/app/v1/src", "http": True,
                "processes": {"web": ["gunicorn", "-b", "127.0.0.1:{port}", "wsgi"]},
                "env": {"PATH": "/venv/bin:/usr/bin"}},
        "db": {"spec": {"name": "db", "type": "postgresql"}, "src": "/d/releases/app/v1/src",
               "http": False, "processes": {"postgres": ["postgres", "-p", "{port}"]}},
    },
}


def test_a_manifest_written_before_types_reads_and_writes_back_the_same(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(OLD_MANIFEST))
    m = Manifest.load(path)
    www, db = m.services["www"], m.services["db"]
    assert (m.revision, m.built) == ("abc1234", 1700000000.5)
    assert (www.type, www.kind, www.http, www.instances) == ("python", Kind.APP, True, 2)
    assert www.processes["web"] == ("gunicorn", "-b", "127.0.0.1:{port}", "wsgi")
    assert (www.healthcheck.path, www.healthcheck.timeout, www.healthcheck.interval) == \
        ("/up", 5.0, 1.0)
    assert www.environment == {"A": "1"} and www.release is None   # built before release commands
    assert (db.kind, db.instances, dict(db.env)) == (Kind.DATA, 1, {})
    m.save(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["services"]["www"] == OLD_MANIFEST["services"]["www"]
    assert Manifest.load(tmp_path / "again.json") == m
    imaged = Manifest.new("abc", {"www": replace(www, image="dotcloud/app:v1-www")})
    imaged.save(tmp_path / "imaged.json")
    assert Manifest.load(tmp_path / "imaged.json").services["www"].image == "dotcloud/app:v1-www"


def test_a_manifest_is_frozen(tmp_path):
    www = ServiceManifest("www", {"type": "python", "environment": {"A": "1"}}, "/s", True,
                          {"web": ["x"]})
    with pytest.raises(TypeError):
        www.spec["type"] = "nodejs"
    with pytest.raises(TypeError):
        www.environment["A"] = "2"
    assert isinstance(www.processes, MappingProxyType)
    assert hash(www) == hash(ServiceManifest("www", dict(www.spec), "/s", True, {"web": ["x"]}))


def test_no_manifest_is_none_and_a_broken_one_names_its_file(tmp_path):
    assert Manifest.load(tmp_path / "manifest.json") is None
    for text in ("{not json", "[]", '{"services": {"www": {"http": true}}}'):
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(ManifestError) as info:
            Manifest.load(tmp_path / "manifest.json")
        assert str(info.value).startswith(f"{tmp_path / 'manifest.json'}: ")
        assert "\n" not in str(info.value)


ROW = {"app": "app", "service": "www", "number": 1, "generation": 7, "port": 20001}


def spec(**changes):
    fields = dict(ROW, service_type="python",
                  processes=(ProcessSpec("web", ["gunicorn", "-b", "127.0.0.1:20001"], "/src"),),
                  env={"PORT": "20001"}, home="/d/homes/app/g7-www.1", log="app/www.1.log",
                  release_dir="/d/releases/app/v3")
    fields.update(changes)
    return InstanceSpec(**fields)


def test_an_instance_spec_survives_its_column():
    for s in (spec(), spec(limits=Limits(256 << 20, 0.5, 64), user=(1001, 1001),
                           image="dotcloud/app:v3-www", node="n2",
                           placement={"flavor": "live"}),
              spec(service="db", data_service=DataService("redis", 7), service_type="redis")):
        back = InstanceSpec.from_json(s.to_json(), **ROW)
        assert back == s
    assert spec().kind is Kind.APP and spec(data_service=DataService("redis", 7)).kind is Kind.DATA
    assert (spec().label, spec().instance_name) == ("www.1", "g7-www.1")
    assert spec().processes[0].argv == ("gunicorn", "-b", "127.0.0.1:20001")
    with pytest.raises(TypeError):
        spec().env["PORT"] = "1"
    assert len({spec(), spec(), spec(port=1)}) == 2       # records holding one can be hashed


def test_a_row_written_before_types_reads_with_its_columns():
    old = {"processes": {"web": {"argv": ["gunicorn"], "cwd": "/src", "env": {"A": "1"}}},
           "env": {"A": "1"}, "home": "/h/g7-www.1", "log": "app/www.1.log"}
    s = InstanceSpec.from_json(json.dumps(old), **ROW)
    assert (s.app, s.service, s.number, s.generation, s.port) == ("app", "www", 1, 7, 20001)
    assert s.processes == (ProcessSpec("web", ("gunicorn",), "/src"),)
    assert dict(s.env) == {"A": "1"} and s.service_type == "" and s.limits == Limits()
    data = dict(old, data_service={"type": "redis", "born": 3})
    s = InstanceSpec.from_json(json.dumps(data), **ROW)
    assert s.data_service == DataService("redis", 3) and s.service_type == "redis"


def test_a_docker_row_of_before_gives_its_own_argv():
    launcher = ["/usr/bin/python3", "/x/runtime/docker_launcher.py", "--image", "python:3.12-slim",
                "--name", "dotcloud-abc-app-g7-www.1-web", "--workdir", "/src", "--",
                "gunicorn", "-b", "127.0.0.1:20001"]
    old = {"processes": {"web": {"argv": launcher, "cwd": "/src", "env": {}}},
           "env": {}, "home": "/h/g7-www.1", "log": "app/www.1.log"}
    s = InstanceSpec.from_json(json.dumps(old), **ROW)
    assert s.processes[0].argv == ("gunicorn", "-b", "127.0.0.1:20001")
    assert s.image is None      # the base image, with the release mounted: as it ran


@pytest.mark.parametrize("text,says", [
    ("{not json", "not JSON"),
    ("[1]", "not a JSON object"),
    ('{"nothing": "useful"}', "incomplete or wrong (KeyError"),
    ('{"processes": {}, "env": {}, "home": "/", "log": "x"}', "has no processes"),
    ('{"processes": {"web": {"argv": [], "cwd": "/"}}, "env": {}, "home": "/", "log": "x"}',
     "process 'web' has no command"),
    ('{"processes": {"web": {"argv": ["x"], "cwd": "/"}}, "home": "/", "log": "x"}',
     "has no environment"),
])
def test_a_broken_spec_says_what_is_wrong(text, says):
    with pytest.raises(SpecError) as info:
        InstanceSpec.from_json(text, **ROW)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_states_keep_the_stores_text():
    assert [d.value for d in Desired] == ["pending", "run", "stop"]
    assert [s.value for s in InstanceState] == ["new", "starting", "running", "backoff",
                                                "crashed", "stopping", "stopped"]
    assert InstanceState("running") == "running" and f"{Desired.RUN}" == "run"
    assert json.dumps({"s": InstanceState.CRASHED}) == '{"s": "crashed"}'
