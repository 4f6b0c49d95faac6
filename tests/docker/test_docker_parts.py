"""The docker runtime's parts on a real engine: the build executor and the launcher,
with their error paths; and the pure argv building of `wrap`."""
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from dockerkit import data_label

from runtime.executor import HOST
from buildpacks.steps import check_step
from dotcloud import appusers, filemodes
from dotcloud.desired import InstanceSpec, ProcessSpec
from dotcloud.errors import BuildError
from dotcloud.settings import Settings
from runtime import docker_engine, docker_launcher
from runtime.docker_build import executor_for

pytestmark = pytest.mark.docker
LAUNCHER = Path(docker_launcher.__file__).resolve()


def settings(tmp_path, **kw) -> Settings:
    return Settings(data=tmp_path / "data", runtime="docker", **kw)


def handed_over(s: Settings) -> Path:
    """A release of `app` its own uid may build into, as hooks.build hands it
    over (steps in the build container run as that uid)."""
    release = s.data / "releases" / "app" / "v1"
    release.mkdir(parents=True)
    user = appusers.for_app(s, "app")
    if user is not None:
        filemodes.own_tree(release, user.uid, user.gid)
    return release


# -- wrap: no engine needed -------------------------------------------------

def test_wrap_runs_each_process_through_the_launcher(tmp_path):
    s = settings(tmp_path)
    src = s.data / "releases" / "app" / "v3" / "src"
    home = s.data / "homes" / "app" / "g2-www.0"
    procs = {"web": {"argv": ["/venv/bin/python", "-m", "gunicorn"], "cwd": str(src),
                     "env": {"PORT": "1234"}},
             "jobs": {"argv": ["/bin/sh", "-c", "run jobs"], "cwd": str(src), "env": {}}}
    wrapped = docker_launcher.wrap(s, app="app", service_type="python", instance=home.name,
                                   processes=procs, home=home)
    assert set(wrapped) == {"web", "jobs"}
    argv = wrapped["web"]["argv"]
    assert argv[:2] == [sys.executable, str(LAUNCHER)]
    assert argv[argv.index("--") + 1:] == ["/venv/bin/python", "-m", "gunicorn"]
    opts = docker_launcher.parse(argv[2:])
    assert opts.image == "python:3.12-slim"
    assert opts.workdir == str(src)
    release = s.data / "releases" / "app" / "v3"
    assert set(opts.mount) == {f"{home}:{home}:rw", f"{release}:{release}:ro",
                               f"{s.data / 'cache'}:{s.data / 'cache'}:ro"}
    # The launcher itself runs in the home, a directory the host has (a
    # Dockerfile's WORKDIR need not exist there); the container in the process's.
    assert wrapped["web"]["env"] == {"PORT": "1234"} and wrapped["web"]["cwd"] == str(home)
    names = {docker_launcher.parse(w["argv"][2:]).name for w in wrapped.values()}
    assert len(names) == 2
    other = docker_launcher.wrap(settings(tmp_path / "other"), app="app", service_type="python",
                                 instance=home.name, processes=procs, home=home)
    assert docker_launcher.parse(other["web"]["argv"][2:]).name not in names


def test_wrap_picks_the_image_by_type_and_mounts_the_static_server(tmp_path):
    s = settings(tmp_path, docker_node_image="my/node:1")
    procs = {"web": {"argv": ["x"], "cwd": str(tmp_path), "env": {}}}
    node = docker_launcher.wrap(s, app="a", service_type="nodejs", instance="g1-www.0",
                                processes=procs, home=tmp_path)
    assert docker_launcher.parse(node["web"]["argv"][2:]).image == "my/node:1"
    static = docker_launcher.wrap(s, app="a", service_type="static", instance="g1-www.0",
                                  processes=procs, home=tmp_path)
    mounts = docker_launcher.parse(static["web"]["argv"][2:]).mount
    assert any(m.endswith("/buildpacks:ro") for m in mounts)


def test_unreachable_engine_fails_the_build_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(BuildError, match="docker engine is not reachable"):
        with executor_for(settings(tmp_path), "app", "www", "python", tmp_path):
            pass


def test_process_runtime_builds_on_the_host(tmp_path):
    with executor_for(Settings(data=tmp_path), "app", "www", "python", tmp_path) as ex:
        # The host's executor; as the app's own user when the platform is root.
        assert ex.on_host and ex.identity == HOST.identity


# -- the build executor --------------------------------------------------------

def test_missing_base_image_fails_the_build_with_a_reason(engine, tmp_path):
    s = settings(tmp_path, docker_python_image="dotcloud-test/missing:none")
    with pytest.raises(BuildError, match=r"dotcloud-test/missing:none not found.*images\.sh"):
        with executor_for(s, "app", "www", "python", tmp_path):
            pass


def test_build_steps_run_in_the_image_and_fail_like_host_steps(engine, tmp_path):
    s = settings(tmp_path)
    release = handed_over(s)
    user = appusers.for_app(s, "app")
    lines = []
    name = docker_engine.container_name(s.data, "app", "v1", "build", "www")
    with executor_for(s, "app", "www", "python", release) as ex:
        assert ex.identity != HOST.identity and ex.python == "python3"
        assert not engine.containers.list(all=True, filters={"name": name})   # no step yet
        assert ex.tool("sh", "/usr/bin:/bin") in ("/bin/sh", "/usr/bin/sh")
        assert engine.containers.get(name).attrs["HostConfig"]["NetworkMode"] == "host"
        assert ex.tool("no-such-tool", "/usr/bin:/bin") is None
        check_step("hello", ("/bin/sh", "-c", "echo one; echo two >&2; test -f /.dockerenv; "
                             "pwd > made-here"), cwd=release, env={"PATH": "/usr/bin:/bin"},
                   timeout=60, log=lines.append, executor=ex)
        assert lines == ["one", "two"]
        assert (release / "made-here").read_text() == f"{release}\n"   # same path inside
        assert os.stat(release / "made-here").st_uid == (user.uid if user else os.getuid())
        with pytest.raises(BuildError, match=r"^bad failed \(exit 3\)$"):
            check_step("bad", ("/bin/sh", "-c", "echo oops; exit 3"), cwd=release, env={},
                       timeout=60, log=lines.append, executor=ex)
        assert lines[-1] == "oops"
        started = time.monotonic()
        with pytest.raises(BuildError, match="slow timed out after 1s"):
            check_step("slow", ("/bin/sh", "-c", "echo begun; sleep 60"), cwd=release,
                       env={}, timeout=1, log=lines.append, executor=ex)
        assert time.monotonic() - started < 30
        assert lines[-1] == "begun"
    with pytest.raises(docker_engine.docker.errors.NotFound):
        engine.containers.get(name)    # removed at the end


def test_a_step_in_the_container_past_the_disk_limit_is_stopped(engine, tmp_path):
    from buildpacks.disklimit import Bounded, DiskLimit
    s = settings(tmp_path)
    release = handed_over(s)
    lines = []
    with executor_for(s, "app", "www", "python", release) as ex:
        bounded = Bounded(ex, DiskLimit(8 * 1024 * 1024, release))
        started = time.monotonic()
        # Never ends by itself: only the limit (or the 120 s deadline) stops it.
        with pytest.raises(BuildError, match=r"^the release is larger than max_release_bytes "
                                             r"\(8\.0 MiB\)$"):
            check_step("filler", ("/bin/sh", "-c", "echo begun; while :; do "
                                  "head -c 1048576 /dev/urandom >> big; done"),
                       cwd=release, env={"PATH": "/usr/bin:/bin"}, timeout=120,
                       log=lines.append, executor=bounded)
        assert time.monotonic() - started < 120 and lines == ["begun"]
        size = (release / "big").stat().st_size
        time.sleep(0.5)
        assert (release / "big").stat().st_size == size, "the container was stopped"


# -- the launcher --------------------------------------------------------------

def launch(tmp_path, name, *command, image="python:3.12-slim", env=None, options=(),
           user=None):
    argv = [sys.executable, str(LAUNCHER), "--image", image, "--name", name,
            "--workdir", str(tmp_path), "--user", user or docker_engine.user(),
            "--stop-grace", "3", "--mount", f"{tmp_path}:{tmp_path}:rw",
            "--label", data_label(tmp_path), *options, "--", *command]
    return subprocess.Popen(argv, cwd="/", env=env or {"PATH": "/usr/bin:/bin", "GREETING": "hi"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_launcher_replaces_a_stale_container_and_passes_output_and_status(engine, tmp_path):
    name = docker_engine.container_name(tmp_path, "stale")
    engine.containers.create("python:3.12-slim", ["sleep", "600"], name=name,
                             network_mode="host", labels={"dotcloud.data": "test"})
    proc = launch(tmp_path, name, "/bin/sh", "-c",
                  'echo "$GREETING from $(pwd)"; echo to-stderr >&2; touch written; exit 7')
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 7, err
    assert out == f"hi from {tmp_path}\n"
    assert "to-stderr" in err and "removed a stale container" in err
    assert (tmp_path / "written").exists()
    assert not engine.containers.list(all=True, filters={"name": name})


def test_launcher_dies_by_the_signal_its_container_reports(engine, tmp_path):
    # 128+9: what the engine reports for a container killed with SIGKILL.
    proc = launch(tmp_path, docker_engine.container_name(tmp_path, "sig"),
                  "/bin/sh", "-c", "exit 137")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL


def test_launcher_stops_the_container_on_sigterm(engine, tmp_path):
    name = docker_engine.container_name(tmp_path, "term")
    # A shell as the container's first process ignores SIGTERM; its child must still get it.
    proc = launch(tmp_path, name, "/bin/sh", "-c",
                  "python3 -c 'import signal, sys, time; "
                  "signal.signal(signal.SIGTERM, lambda *a: (print(\"child got TERM\", "
                  "flush=True), sys.exit(0))); print(\"ready\", flush=True); time.sleep(600)'")
    assert proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "child got TERM" in out, err
    assert time.monotonic() - started < 60
    assert not engine.containers.list(all=True, filters={"name": name})


CONFINED_PROBE = """
import os, sys
print(os.getuid(), os.getgid())
for path in ("/", "/usr", os.environ.get("TMPDIR", "/tmp"), "/tmp", os.getcwd()):
    print(path, os.access(path, os.W_OK))
status = open("/proc/self/status").read()
print("CapEff", [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")][0])
print("NoNewPrivs", [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs")][0])
"""


def test_confined_container_runs_as_the_user_read_only_without_privileges(engine, tmp_path):
    name = docker_engine.container_name(tmp_path, "confined")
    os.chmod(tmp_path, 0o777)
    proc = launch(tmp_path, name, "python3", "-c", CONFINED_PROBE, user="60123:60123",
                  options=["--scratch", "/tmp", "--memory", str(256 * 1024 * 1024),
                           "--cpus", "0.5", "--pids", "64"])
    seen = {}
    # Created, so its flags can be read while the probe runs (or just after).
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        try:
            seen = engine.api.inspect_container(name)["HostConfig"]
        except docker_engine.docker.errors.NotFound:
            time.sleep(0.01)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "60123 60123"
    assert lines[1:6] == ["/ False", "/usr False", "/tmp True", "/tmp True", f"{tmp_path} True"]
    assert lines[6:] == ["CapEff 0000000000000000", "NoNewPrivs 1"]
    if seen:
        assert seen["ReadonlyRootfs"] and seen["CapDrop"] == ["ALL"]
        assert seen["Memory"] == 256 * 1024 * 1024 and seen["MemorySwap"] == seen["Memory"]
        assert seen["NanoCpus"] == 500_000_000 and seen["PidsLimit"] == 64


def test_container_over_its_memory_limit_says_out_of_memory(engine, tmp_path):
    proc = launch(tmp_path, docker_engine.container_name(tmp_path, "oom"), "python3", "-c",
                  "b = []\nwhile True: b.append(bytearray(8 << 20))",
                  options=["--scratch", "/tmp", "--memory", str(32 * 1024 * 1024)])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert "[docker] out of memory (limit 32M)" in err


def test_scratch_moves_when_the_data_directory_is_under_tmp(tmp_path):
    s = settings(tmp_path)
    procs = {"web": {"argv": ["x"], "cwd": str(tmp_path), "env": {}}}
    wrapped = docker_launcher.wrap(s, app="a", service_type="python", instance="g1-www.0",
                                   processes=procs, home=tmp_path, image="sha256:abc",
                                   user=(60001, 60002))
    opts = docker_launcher.parse(wrapped["web"]["argv"][2:])
    assert opts.image == "sha256:abc" and opts.user == "60001:60002"
    assert opts.mount == [f"{tmp_path}:{tmp_path}:rw"]     # the home alone
    assert opts.scratch == ("/var/tmp" if str(tmp_path).startswith("/tmp/") else "/tmp")
    assert opts.memory is None and opts.cpus is None and opts.pids is None
    env = docker_launcher.Launcher(opts, {"A": "1"})._environment()
    assert env.get("TMPDIR") == (None if opts.scratch == "/tmp" else "/var/tmp")


def test_wrap_passes_the_limits_the_spec_has(tmp_path):
    from dotcloud.desired import Limits
    procs = {"web": {"argv": ["x"], "cwd": str(tmp_path), "env": {}}}
    wrapped = docker_launcher.wrap(settings(tmp_path), app="a", service_type="python",
                                   instance="g1-www.0", processes=procs, home=tmp_path,
                                   image="sha256:abc", limits=Limits(512 << 20, 1.5, None))
    opts = docker_launcher.parse(wrapped["web"]["argv"][2:])
    assert (opts.memory, opts.cpus, opts.pids) == (512 << 20, 1.5, None)
    assert docker_launcher.host_options(opts)["NanoCpus"] == 1_500_000_000


def test_launcher_reports_a_missing_image(engine, tmp_path):
    proc = launch(tmp_path, docker_engine.container_name(tmp_path, "noimg"), "true",
                  image="dotcloud-test/missing:none")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == docker_launcher.EXIT_ENGINE
    assert "[docker] cannot start container" in err and "missing" in err
    assert os.path.basename(str(LAUNCHER)) == "docker_launcher.py"


# -- sweeping what dead shims and pipelines left ------------------------------

@pytest.fixture(scope="module")
def tiny_image(engine):
    """An image of one empty file: enough for containers that are never started."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("placeholder"), io.BytesIO(b""))
    name = "dotcloud-test/tiny:1"
    engine.api.import_image_from_data(buf.getvalue(), repository="dotcloud-test/tiny", tag="1")
    yield name
    engine.images.remove(name, force=True)


def test_sweep_removes_only_this_platforms_unused_containers(engine, tiny_image, tmp_path):
    data, other = tmp_path / "data", tmp_path / "other"
    mine = {docker_engine.LABEL_DATA: docker_engine.data_id(data)}

    def make(name, labels, image=tiny_image, command=("x",), start=False):
        c = engine.containers.create(image, list(command), name=name, labels=labels,
                                     network_mode="host")
        if start:
            c.start()
        return name

    wanted = make(docker_engine.container_name(data, "a", "g2-www.0", "web"),
                  dict(mine, **{"dotcloud.instance": "g2-www.0"}))
    orphan = make(docker_engine.container_name(data, "a", "g1-www.0", "web"),
                  dict(mine, **{"dotcloud.instance": "g1-www.0"}))
    dead_build = make(docker_engine.container_name(data, "a", "v1", "build", "www"),
                      dict(mine, **{"dotcloud.build": "www"}))
    live_build = make(docker_engine.container_name(data, "a", "v2", "build", "www"),
                      dict(mine, **{"dotcloud.build": "www"}), image="python:3.12-slim",
                      command=("sleep", "600"), start=True)
    foreign = make(docker_engine.container_name(other, "a", "g1-www.0", "web"),
                   {docker_engine.LABEL_DATA: docker_engine.data_id(other),
                    "dotcloud.instance": "g1-www.0"})
    try:
        removed = docker_engine.sweep(engine, data, keep={wanted}, build_age=3600)
        assert sorted(removed) == sorted([orphan, dead_build])
        left = {c.name for c in engine.containers.list(all=True)}
        assert {wanted, live_build, foreign} <= left and not {orphan, dead_build} & left
        # A build container older than the longest build belongs to a dead pipeline.
        later = time.time() + 7200
        assert docker_engine.sweep(engine, data, keep={wanted}, build_age=3600,
                                   now=later) == [live_build]
    finally:
        for name in (wanted, orphan, dead_build, live_build, foreign):
            docker_engine.remove(engine, name)


def test_container_names_of_a_spec(tmp_path):
    s = settings(tmp_path)
    procs = {"web": {"argv": ["a"], "cwd": str(tmp_path), "env": {}},
             "jobs": {"argv": ["b"], "cwd": str(tmp_path), "env": {}}}
    wrapped = docker_launcher.wrap(s, app="app", service_type="python", instance="g1-www.0",
                                   processes=procs, home=tmp_path)
    spec = InstanceSpec(app="app", service="www", number=0, generation=1, port=20000,
                        service_type="python", processes=[ProcessSpec(n, p["argv"], p["cwd"])
                                                          for n, p in procs.items()],
                        env={}, home=str(tmp_path / "g1-www.0"), log="app/www.0.log")
    # The names the runtime reads from the typed spec are those its launchers get.
    assert docker_launcher.container_names(s, spec) == {
        n: docker_launcher.parse(w["argv"][2:]).name for n, w in wrapped.items()} == {
        p: docker_engine.container_name(s.data, "app", "g1-www.0", p) for p in ("web", "jobs")}


# -- the launcher's own engine client -------------------------------------------

def test_engine_client_says_why_it_cannot_reach_the_engine(tmp_path, monkeypatch):
    from runtime import docker_socket
    monkeypatch.setenv("DOCKER_HOST", "ssh://someone@somewhere")
    with pytest.raises(docker_socket.EngineError, match="unix:// and tcp:// only"):
        docker_socket.Engine.from_env()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(docker_socket.EngineError,
                       match="docker engine is not reachable at unix://"):
        docker_socket.Engine.from_env().remove("x")
    proc = launch(tmp_path, docker_engine.container_name(tmp_path, "noengine"), "true",
                  env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == docker_launcher.EXIT_ENGINE
    assert "[docker] cannot start container" in err and "not reachable" in err


def test_engine_client_passes_the_engines_own_message(engine):
    from runtime import docker_socket
    client = docker_socket.Engine.from_env()
    with pytest.raises(docker_socket.EngineError) as e:
        client.create("dotcloud-test-never", {"Image": "dotcloud-test/missing:none"})
    assert e.value.status == 404 and "dotcloud-test/missing:none" in str(e.value)
    assert client.remove("dotcloud-test-no-such-container") is False
