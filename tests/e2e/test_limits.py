"""Issue 16, limits: each service's cgroup holds its memory, CPU and process count,
through real pushes, real processes and real cgroups (skipped where the host has none).

An instance, a build step, a release command or a `run` command past its
memory is OOM-killed and says `out of memory (limit 64M)`; a fork bomb stops
at its `processes`; what calls setsid() is stopped with its command; and a
neighbour app under load loses no request to an app that bombs.
"""
import os
import shlex
import signal
import subprocess

import pytest
from limitkit import custom_app, pids_with, ssh, status_json, unique_sleep, wait_until
from loadgen import Load
from platform_helpers import git_repo, python_app

from runtime import cgroups

pytestmark = pytest.mark.skipif(cgroups.hierarchies() is None,
                                reason="needs root and mounted cgroups")
MiB = 1024 * 1024

FORK_BOMB = '''
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
'''

MEMORY_BOMB = '''
hog = []
while True:
    hog.append(b"x" * (8 * 1024 * 1024))
'''


def group_of(pid: int) -> dict[str, str]:
    """controller -> cgroup path of a process (v1), or {'': path} (v2)."""
    out = {}
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def test_limits_are_applied_and_reported(platform, tmp_path):
    repo = git_repo(tmp_path / "lim", custom_app("{memory: 96M, cpus: 0.5, processes: 64}",
                                                 {"web": "python3 server.py"}))
    r = platform.push("alice", repo, "lim")
    assert r.code == 0, r.text
    inst = status_json(platform, "lim")["instances"][0]
    assert inst["limits"] == {"memory_bytes": 96 * MiB, "cpus": 0.5, "processes": 64}
    assert inst["oom_kills"] == 0 and inst["last_exit_reason"] is None
    pid = inst["processes"]["web"]["pid"]
    where = cgroups.hierarchies()
    groups = group_of(pid)
    expected = f"/{cgroups.parent_path(platform.data)}/instance-{inst['id']}"
    if where.version == 1:
        assert groups["memory"] == groups["pids"] == groups["cpu"] == expected
        mount = dict(where.mounts)
        assert (mount["memory"] / expected[1:] / "memory.limit_in_bytes").read_text().strip() \
            == str(96 * MiB)
        assert (mount["pids"] / expected[1:] / "pids.max").read_text().strip() == "64"
        assert (mount["cpu"] / expected[1:] / "cpu.cfs_quota_us").read_text().strip() == "50000"
    else:
        assert groups[""] == expected
    # A service without limits gets config.yml's default_limits.
    plain = git_repo(tmp_path / "nolim", python_app("nolim"))
    assert platform.push("alice", plain, "nolim").code == 0
    assert status_json(platform, "nolim")["instances"][0]["limits"] == \
        {"memory_bytes": 1024 * MiB, "cpus": None, "processes": 1024}


def test_an_instance_killed_for_memory_says_so_in_status(platform, tmp_path):
    repo = git_repo(tmp_path / "oom", custom_app("{memory: 64M}", {"web": "python3 server.py"}))
    assert platform.push("alice", repo, "oom").code == 0
    assert platform.get("oom.localhost")[0] == 200
    try:
        platform.get("oom.localhost", "/bomb", timeout=20)
    except OSError:
        pass   # the instance died mid-request: that is the point
    # The shim reports at once; the runtime records the exit on its next pass.
    inst = wait_until(lambda: next((i for i in status_json(platform, "oom")["instances"]
                                    if i["last_exit_reason"] and i["last_exit"] is not None),
                                   None), what="the OOM exit")
    assert inst["last_exit_reason"] == "out of memory (limit 64M)"
    # 137: the shell running the command reports its child's SIGKILL.
    assert inst["last_exit"] in (-signal.SIGKILL, 137) and inst["oom_kills"] >= 1
    assert inst["processes"]["web"]["last_exit_reason"] == "out of memory (limit 64M)"
    text = ssh(platform, "status", "oom").out
    assert "out of memory (limit 64M)" in text
    assert f"www.0: {inst['oom_kills']} process(es) killed for memory (limit 64M)" in text
    wait_until(lambda: platform.get("oom.localhost")[0] == 200, what="the restart")


def test_an_instance_killed_for_memory_during_a_deploy_says_so_in_the_push(platform, tmp_path):
    repo = git_repo(tmp_path / "oomboot", custom_app(
        "{memory: 64M}", {"web": "python3 server.py"}, env={"BOMB_AT_BOOT": "1"}))
    r = platform.push("alice", repo, "oomboot")
    assert r.code != 0
    assert "out of memory (limit 64M)" in r.text, r.text
    assert "deploy failed: www.0 crashed at boot (out of memory (limit 64M))" in r.text, r.text


def test_a_build_past_its_memory_fails_with_that_reason(platform, tmp_path):
    # The reason names the build's limit, not the app's.
    repo = git_repo(tmp_path / "buildoom", custom_app(
        "{memory: 64M, build: {memory: 96M}}", {"web": "python3 server.py"},
        buildscript="python3 -c 'hog = b\"x\" * (400 * 1024 * 1024)'"))
    r = platform.push("alice", repo, "buildoom")
    assert r.code != 0
    assert "buildscript failed: out of memory (limit 96M)" in r.text, r.text


def memory_limit_of(platform, inst: dict) -> int:
    """What the instance's cgroup holds its memory to (v1 or v2)."""
    where = cgroups.hierarchies()
    relative = f"{cgroups.parent_path(platform.data)}/instance-{inst['id']}"
    if where.version == 1:
        path = dict(where.mounts)["memory"] / relative / "memory.limit_in_bytes"
    else:
        path = dict(where.mounts)[""] / relative / "memory.max"
    return int(path.read_text())


def test_a_build_gets_more_memory_than_its_app(platform, tmp_path):
    # 150M written by a prebuild hook, under config.yml's default_build_limits
    # (2G), while the app it builds runs in 64M.
    repo = git_repo(tmp_path / "bigbuild", custom_app(
        "{memory: 64M}", {"web": "python3 server.py"},
        prebuild="python3 -c 'hog = b\"x\" * (150 * 1024 * 1024); print(\"hogged\", len(hog))'"))
    r = platform.push("alice", repo, "bigbuild")
    assert r.code == 0, r.text
    assert f"hogged {150 * MiB}" in r.text
    inst = status_json(platform, "bigbuild")["instances"][0]
    assert inst["limits"]["memory_bytes"] == 64 * MiB
    assert memory_limit_of(platform, inst) == 64 * MiB
    assert platform.get("bigbuild.localhost")[0] == 200


def test_a_release_command_runs_under_the_limits_too(platform, tmp_path):
    marker = unique_sleep()
    repo = git_repo(tmp_path / "reloom", custom_app(
        "{memory: 64M}", {"web": "python3 server.py"},
        release=f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & "
                "python3 -c 'hog = b\"x\" * (400 * 1024 * 1024)'"))
    r = platform.push("alice", repo, "reloom")
    assert r.code != 0
    assert "release command failed: out of memory (limit 64M)" in r.text, r.text
    assert pids_with(marker) == []


def test_a_build_step_that_calls_setsid_is_gone_after_the_build(platform, tmp_path):
    marker = unique_sleep()
    repo = git_repo(tmp_path / "buildsetsid", custom_app(
        "{processes: 64}", {"web": "python3 server.py"},
        buildscript=f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & echo escaped"))
    r = platform.push("alice", repo, "buildsetsid")
    assert r.code == 0, r.text
    assert "escaped" in r.text
    assert pids_with(marker) == []


def test_a_run_command_that_calls_setsid_is_stopped_on_hang_up(platform, tmp_path):
    repo = git_repo(tmp_path / "runsetsid", custom_app("{processes: 64}",
                                                       {"web": "python3 server.py"}))
    assert platform.push("alice", repo, "runsetsid").code == 0
    escaped, waiting = unique_sleep(), unique_sleep()
    script = f"setsid sleep {escaped} </dev/null >/dev/null 2>&1 & echo started; sleep {waiting}"
    argv = platform.ssh_command("alice").split() + [
        "-p", str(platform.ssh_port), f"dotcloud@{platform.address}",
        shlex.join(["run", "runsetsid", "www", "--", "sh", "-c", script])]
    client = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert client.stdout.readline() == b"started\n"
        pid = wait_until(lambda: pids_with(escaped), what="the setsid sleep")[0]
        assert os.getsid(pid) == pid     # its own session: no process group holds it
    finally:
        client.kill()
        client.wait()
    wait_until(lambda: not pids_with(escaped) and not pids_with(waiting), timeout=30,
               what="the command and what it setsid()ed to be stopped")


def test_a_run_command_past_its_memory_says_so(platform, tmp_path):
    repo = git_repo(tmp_path / "runoom", custom_app("{memory: 64M}", {"web": "python3 server.py"}))
    assert platform.push("alice", repo, "runoom").code == 0
    r = ssh(platform, "run", "runoom", "www", "--", "python3", "-c",
            "hog = b'x' * (400 * 1024 * 1024)")
    assert r.code == 137, r.text
    assert "python3: out of memory (limit 64M)" in r.err


def test_bombs_leave_a_neighbour_serving_every_request(platform, tmp_path):
    neighbour = git_repo(tmp_path / "calm", python_app("calm"))
    assert platform.push("alice", neighbour, "calm").code == 0
    hostile = git_repo(tmp_path / "bombs", custom_app(
        "{memory: 256M, processes: 48, cpus: 0.5}",
        {"web": "python3 server.py"},
        files={"forkbomb.py": FORK_BOMB, "membomb.py": MEMORY_BOMB}))
    with Load(platform.http_port, "calm.localhost", clients=4) as load:
        load.wait_ok(20)
        r = platform.push("alice", hostile, "bombs")
        assert r.code == 0, r.text
        inst = status_json(platform, "bombs")["instances"][0]
        group = cgroups.existing(platform.data, cgroups.instance_name(inst["id"]))
        assert platform.get("bombs.localhost", "/go")[0] == 200
        wait_until(lambda: group.oom_kills() >= 1, what="the memory bomb OOM-killed")
        wait_until(lambda: len(group.pids()) >= 40, what="the fork bomb at its cap")
        started = load.total
        wait_until(lambda: load.total - started >= 200, what="200 requests under the bombs")
        assert len(group.pids()) <= 48
    assert load.failures == 0, load.errors[:5]
    assert os.system("true") == 0     # the host still forks
    assert ssh(platform, "destroy", "bombs", "--force").code == 0
