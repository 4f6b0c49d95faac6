"""Issue 16 under the docker runtime: a service's limits hold its instances, its
build steps and its `run` commands, each in a container, and a container the
kernel killed for memory says `out of memory (limit 64M)` as on the host. A
`run` command runs in a container of the release's image (a dockerfile
service has nothing on the host to run), removed whole on hang-up."""
import dataclasses
import os
import shlex
import signal
import subprocess

import pytest
from dockerkit import app_containers, data_label
from limitkit import (HOG, SERVER, custom_app, pids_with, ssh, status_json, unique_sleep,
                      wait_until)
from platform_helpers import git_repo

from buildpacks.steps import check_step
from dotcloud import appusers
from dotcloud.desired import InstanceSpec, ProcessSpec
from dotcloud.errors import BuildError, DotcloudError
from dotcloud.resources import Limits
from dotcloud.settings import Settings, load
from runtime import docker_launcher, docker_run
from runtime.docker_build import executor_for

pytestmark = pytest.mark.docker
MiB = 1024 * 1024

def test_a_container_killed_for_memory_says_so_in_status(dplatform, engine, tmp_path):
    repo = git_repo(tmp_path / "doom", custom_app("{memory: 64M}"))
    r = dplatform.push("alice", repo, "doom")
    assert r.code == 0, r.text
    assert dplatform.get("doom.localhost")[0] == 200
    try:
        dplatform.get("doom.localhost", "/bomb", timeout=20)
    except OSError:
        pass   # the container died mid-request: that is the point
    inst = wait_until(lambda: next((i for i in status_json(dplatform, "doom")["instances"]
                                    if i["last_exit_reason"] and i["last_exit"] is not None),
                                   None), timeout=90, what="the OOM exit")
    assert inst["last_exit_reason"] == "out of memory (limit 64M)"
    assert inst["last_exit"] in (-signal.SIGKILL, 137) and inst["oom_kills"] >= 1
    assert inst["processes"]["web"]["last_exit_reason"] == "out of memory (limit 64M)"
    assert inst["limits"]["memory_bytes"] == 64 * MiB
    text = ssh(dplatform, "status", "doom").out
    assert "out of memory (limit 64M)" in text and "SIGKILL" not in text
    wait_until(lambda: dplatform.get("doom.localhost")[0] == 200, timeout=90,
               what="the restart")


def test_a_build_step_runs_under_the_limits_and_fails_out_of_memory(dplatform, tmp_path):
    # What the build container's own cgroup says (v1 or v2), then a step past it.
    show = ("echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
            " || cat /sys/fs/cgroup/memory.max) pids=$(cat /sys/fs/cgroup/pids/pids.max"
            " 2>/dev/null || cat /sys/fs/cgroup/pids.max)")
    repo = git_repo(tmp_path / "dbuildoom", custom_app(
        "{memory: 256M, build: {memory: 64M, processes: 77}}", buildscript=f"{show}; {HOG}"))
    r = dplatform.push("alice", repo, "dbuildoom")
    assert r.code != 0
    assert f"memory={64 * MiB} pids=77" in r.text, r.text
    assert "buildscript failed: out of memory (limit 64M)" in r.text, r.text


def test_a_build_container_gets_the_build_limits_not_the_apps(dplatform, engine, tmp_path):
    hog = "python3 -c 'hog = b\"x\" * (150 * 1024 * 1024); print(\"hogged\", len(hog))'"
    repo = git_repo(tmp_path / "dbigbuild", custom_app("{memory: 64M}", buildscript=hog))
    r = dplatform.push("alice", repo, "dbigbuild")
    assert r.code == 0, r.text
    assert f"hogged {150 * MiB}" in r.text
    inst = status_json(dplatform, "dbigbuild")["instances"][0]
    assert inst["limits"]["memory_bytes"] == 64 * MiB
    [container] = app_containers(engine, dplatform.data, "dbigbuild")
    assert container.attrs["HostConfig"]["Memory"] == 64 * MiB


@pytest.mark.parametrize("counted_by", ["cgroup", "engine events"])
def test_a_build_container_step_killed_for_memory_raises_the_reason(engine, tmp_path,
                                                                    counted_by):
    s = Settings(data=tmp_path / "data", runtime="docker")
    release = s.data / "releases" / "app" / "v1"
    release.mkdir(parents=True)
    limits = Limits(memory_bytes=48 * MiB, cpus=0.5, processes=50)
    lines = []
    with executor_for(s, "app", "www", "python", release, limits=limits) as ex:
        assert ex.tool("sh", "/usr/bin:/bin")     # the container is up
        host = ex.container.attrs["HostConfig"]
        assert (host["Memory"], host["MemorySwap"]) == (48 * MiB, 48 * MiB)
        assert (host["NanoCpus"], host["PidsLimit"]) == (500_000_000, 50)
        if counted_by == "engine events":
            ex.memory_group = None    # as with an engine on another host
        else:
            assert ex.memory_group is not None
        with pytest.raises(BuildError, match=r"^hog failed: out of memory \(limit 48M\)$"):
            check_step("hog", ("python3", "-c", "hog = b'x' * (400 * 1024 * 1024)"),
                       cwd=release, env={"PATH": "/usr/bin:/bin"}, timeout=60,
                       log=lines.append, executor=ex)
        # A plain failure afterwards is not taken for memory.
        with pytest.raises(BuildError, match=r"^bad failed \(exit 3\)$"):
            check_step("bad", ("/bin/sh", "-c", "exit 3"), cwd=release, env={}, timeout=60,
                       log=lines.append, executor=ex)


RUN_DOCKERFILE = '''FROM python:3.12-slim
RUN echo only-in-the-image > /built
EXPOSE 8080
WORKDIR /srv/runapp
COPY server.py .
CMD ["python3", "-u", "server.py"]
'''


@pytest.fixture(scope="module")
def rundf(dplatform, tmp_path_factory):
    """A dockerfile service (nothing of it runs on the host) with a memory limit."""
    files = {"Dockerfile": RUN_DOCKERFILE, "server.py": SERVER,
             "dotcloud.yml": "www:\n  type: dockerfile\n  limits: {memory: 64M}\n"}
    repo = git_repo(tmp_path_factory.mktemp("rundf") / "repo", files)
    r = dplatform.push("alice", repo, "rundf")
    assert r.code == 0, r.text
    return "rundf"


def run_containers(engine, data) -> list:
    return engine.containers.list(all=True, filters={"label": [data_label(data),
                                                               "dotcloud.run"]})


def test_run_runs_in_a_container_of_the_release_image(dplatform, engine, rundf):
    script = ("cat /built; pwd; id -u; echo home=$HOME; touch /x 2>/dev/null || echo read-only;"
              " test -w $HOME && echo home-writable; cat; exit 3")
    r = dplatform.ssh("alice", shlex.join(["run", rundf, "www", "--", "sh", "-c", script]),
                      input=b"from the client's stdin\n")
    assert r.code == 3, r.text
    lines = r.out.splitlines()
    user = appusers.for_app(load(dplatform.data, runtime="docker"), rundf)
    assert lines[:3] == ["only-in-the-image", "/srv/runapp",
                         str(user.uid if user is not None else os.getuid())]
    assert lines[3].startswith(f"home={dplatform.data}")
    assert lines[4:] == ["read-only", "home-writable", "from the client's stdin"]
    assert run_containers(engine, dplatform.data) == []     # removed at its end


def test_run_in_a_container_past_its_memory_says_so(dplatform, engine, rundf):
    r = ssh(dplatform, "run", rundf, "www", "--", "python3", "-c",
            "hog = b'x' * (400 * 1024 * 1024)")
    assert r.code == 137, r.text
    assert "python3: out of memory (limit 64M)" in r.err, r.text
    assert run_containers(engine, dplatform.data) == []


def test_run_in_a_container_past_its_timeout_is_removed(dplatform, engine, rundf):
    r = ssh(dplatform, "run", rundf, "www", "--timeout", "2", "--", "sleep", "60")
    assert r.code == 124, r.text
    assert "sleep did not finish in 2s; killed" in r.err, r.text
    assert run_containers(engine, dplatform.data) == []


def test_a_command_missing_from_the_image_says_so(dplatform, engine, rundf):
    r = ssh(dplatform, "run", rundf, "www", "--", "no-such-command")
    assert r.code == 127, r.text
    assert "[docker] no-such-command: command not found in the image" in r.err, r.text
    r = ssh(dplatform, "run", rundf, "www", "--", "/no/such/program")
    assert r.code == 127, r.text
    assert "[docker] /no/such/program: command not found in the image" in r.err, r.text
    assert run_containers(engine, dplatform.data) == []


def test_run_in_a_container_is_stopped_whole_on_hang_up(dplatform, engine, rundf):
    marker = unique_sleep()
    script = f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & echo started; sleep 3001"
    argv = dplatform.ssh_command("alice").split() + [
        "-p", str(dplatform.ssh_port), f"dotcloud@{dplatform.address}",
        shlex.join(["run", rundf, "www", "--", "sh", "-c", script])]
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert client.stdout.readline() == b"started\n"
        [running] = run_containers(engine, dplatform.data)
        assert running.attrs["HostConfig"]["ReadonlyRootfs"]
        assert running.attrs["HostConfig"]["Memory"] == 64 * MiB
        assert running.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    finally:
        client.kill()
        client.wait()
    wait_until(lambda: run_containers(engine, dplatform.data) == [], timeout=60,
               what="the run container to go")
    wait_until(lambda: not pids_with(marker), timeout=30, what="what it setsid()ed")


def test_run_launcher_argv_and_a_release_without_an_image(tmp_path):
    s = Settings(data=tmp_path / "data", runtime="docker")
    spec = InstanceSpec(app="app", service="www", number=0, generation=1, port=20000,
                        service_type="python", processes=[ProcessSpec("web", ["a"], "/src")],
                        env={"A": "b"}, home=str(tmp_path / "g1-www.0"), log="app/www.0.log",
                        limits=Limits(memory_bytes=64 * MiB), user=(60001, 60001),
                        image="sha256:abc")
    launch = docker_run.launcher(s, spec, ["sh", "-c", "cat"], reason_file=tmp_path / "r")
    opts = docker_launcher.parse(launch.argv[2:])
    assert opts.stdin and opts.image == "sha256:abc" and opts.user == "60001:60001"
    assert opts.memory == 64 * MiB and opts.workdir == "/src" and opts.scratch
    assert opts.mount == [f"{spec.home}:{spec.home}:rw"] and opts.name == launch.container
    assert opts.command == ["sh", "-c", "cat"] and launch.env == {"A": "b"}
    assert "dotcloud.run=www" in opts.label                  # no instance label: not swept
    assert not any(label.startswith("dotcloud.instance=") for label in opts.label)
    with pytest.raises(DotcloudError, match="app's release has no image .*push again"):
        docker_run.launcher(s, dataclasses.replace(spec, image=None), ["true"],
                            reason_file=tmp_path / "r")
