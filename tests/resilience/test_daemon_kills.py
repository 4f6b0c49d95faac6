"""Issue 5: kill -9 each daemon of a running platform while a client hammers
an app, and count what the client saw."""
import json
import os
import socket
import subprocess
import time

from loadgen import Load
from platform_helpers import git_repo, python_app
from resilience_helpers import (alive, daemon_pid, instance, instances, kill9, process_pid,
                                runtime_pass, runtime_ping, shims_for, up_pids, wait_daemon_replaced,
                                wait_until)


def deploy(platform, tmp_path, app, body, name=None):
    repo = git_repo(tmp_path / (name or app), python_app(body))
    r = platform.push("alice", repo, app)
    assert r.code == 0, r.text
    return repo


def redeploy(platform, repo, app, body) -> None:
    git_repo(repo, python_app(body), body)
    r = platform.push("alice", repo, app)
    assert r.code == 0, r.text


def serves(platform, host, body) -> bool:
    """A good answer through the router on a fresh connection."""
    try:
        return platform.get(host, timeout=1)[:2] == (200, body)
    except OSError:
        return False


def test_every_daemon_writes_its_pid(own_platform):
    data = own_platform.data
    up = up_pids(data)
    assert up["pid"] == own_platform.proc.pid
    for name in ("ssh", "router", "runtime", "acme"):
        assert daemon_pid(data, name) == up["daemons"][name]
    assert runtime_ping(data) == daemon_pid(data, "runtime")


def test_kill_ssh_daemon_under_load(own_platform, tmp_path):
    p = own_platform
    repo = deploy(p, tmp_path, "rssh", "rssh v1")
    old = daemon_pid(p.data, "ssh")
    with Load(p.http_port, "rssh.localhost", clients=6) as load:
        load.wait_ok(50)
        kill9(old)
        new = wait_daemon_replaced(p.data, "ssh", old)
        p.wait_listening()
        load.wait_ok(50)
        # A push through the restarted daemon, still under load.
        redeploy(p, repo, "rssh", "rssh v2")
        load.wait_ok(50)
    print(f"\nkill -9 ssh: {load.summary()}; new ssh pid {new}")
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) <= {"rssh v1", "rssh v2"} and "rssh v2" in load.bodies
    assert up_pids(p.data)["daemons"]["ssh"] == new


def test_kill_runtime_daemon_under_load(own_platform, tmp_path):
    p = own_platform
    repo = deploy(p, tmp_path, "rrt", "rrt v1")
    [inst] = instances(p.data, "rrt")
    shim, master = inst.pid, process_pid(p.data, inst.id)
    assert alive(shim) and alive(master)
    old = daemon_pid(p.data, "runtime")
    with Load(p.http_port, "rrt.localhost", clients=6) as load:
        load.wait_ok(50)
        kill9(old)
        new = wait_daemon_replaced(p.data, "runtime", old)
        wait_until(lambda: runtime_ping(p.data) == new, what="the new runtime to answer")
        assert runtime_pass(p.data)
        load.wait_ok(50)
        # Adopted, not replaced: the same shim and the same app process serve.
        after = instance(p.data, inst.id)
        assert after.pid == shim and after.state == "running"
        assert shims_for(p.data, inst.id) == [shim]
        assert process_pid(p.data, inst.id) == master
        # The new runtime deploys and retires generations as the old one did.
        redeploy(p, repo, "rrt", "rrt v2")
        load.wait_ok(50)
    print(f"\nkill -9 runtime: {load.summary()}")
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) <= {"rrt v1", "rrt v2"} and "rrt v2" in load.bodies
    wait_until(lambda: not alive(shim), what="the old generation's shim to stop")
    # Orphaned by the killed runtime, it was reaped by `up` (no zombie left).
    wait_until(lambda: not os.path.exists(f"/proc/{shim}"), 5, "the old shim to be reaped")
    wait_until(lambda: instance(p.data, inst.id).state == "stopped", 5,
               "the old instance to be recorded stopped")


def test_kill_router_restarts_with_its_table(own_platform, tmp_path):
    p = own_platform
    deploy(p, tmp_path, "rrta", "rrta body")
    deploy(p, tmp_path, "rrtb", "rrtb body")
    table = json.loads((p.data / "run" / "routes.json").read_text())
    old = daemon_pid(p.data, "router")
    with Load(p.http_port, "rrta.localhost", clients=4) as load:
        load.wait_ok(50)
        before = load.counts()
        kill9(old)
        killed_at = time.monotonic()
        wait_until(lambda: serves(p, "rrta.localhost", "rrta body"),
                   what="the router to serve again", poll=0.005)
        back_after = time.monotonic() - killed_at
        load.wait_ok(50)
    new = daemon_pid(p.data, "router")
    lost = load.failures - before[1]
    print(f"\nkill -9 router: served again after {back_after:.3f}s; "
          f"{lost} failed requests during the restart; {load.summary()}")
    assert new and new != old
    assert json.loads((p.data / "run" / "routes.json").read_text()) == table
    assert p.get("rrta.localhost")[:2] == (200, "rrta body")
    assert p.get("rrtb.localhost")[:2] == (200, "rrtb body")
    assert p.get("nosuchapp.localhost")[0] == 404


def test_kill_runtime_during_a_deploy(own_platform, tmp_path):
    """The runtime dies as the deployer asks it to launch the new generation:
    the restarted runtime launches it, the push succeeds, nobody notices."""
    p = own_platform
    repo = deploy(p, tmp_path, "rmid", "rmid v1")
    git_repo(repo, python_app("rmid v2"), "v2")
    old = daemon_pid(p.data, "runtime")
    with Load(p.http_port, "rmid.localhost", clients=4) as load:
        load.wait_ok(50)
        push = subprocess.Popen(["git", "push", p.remote("rmid"), "main"], cwd=repo,
                                env=p.git_env("alice"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        seen = []
        for line in push.stdout:
            seen.append(line.decode(errors="replace"))
            if "Launching..." in seen[-1]:
                kill9(old)
                break
        out = "".join(seen) + push.communicate(timeout=120)[0].decode(errors="replace")
        assert push.returncode == 0, out
        load.wait_ok(50)
    print(f"\nkill -9 runtime during a deploy: {load.summary()}")
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) <= {"rmid v1", "rmid v2"}
    assert p.get("rmid.localhost")[:2] == (200, "rmid v2")
    # The push may go live before `up` has restarted the runtime: the old one
    # started the new shims before it died.
    wait_until(lambda: daemon_pid(p.data, "runtime") not in (None, old), 10, "a new runtime")
    # One shim per instance, recorded (once the new runtime has adopted it,
    # when the old one started it and died before it could record it).
    for inst in instances(p.data, "rmid"):
        wait_until(lambda: shims_for(p.data, inst.id) == [instance(p.data, inst.id).pid], 10,
                   f"instance {inst.id}: one shim, recorded")


def test_runtime_control_socket_refuses_garbage(own_platform):
    p = own_platform
    sock_path = p.data / "run" / "runtime.sock"
    pid = daemon_pid(p.data, "runtime")
    for garbage in (b"not json\n", b"[1, 2]\n", b'{"op": "explode"}\n', b"\xff\xfe\n"):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(sock_path))
            s.sendall(garbage)
            reply = json.loads(s.makefile("rb").readline())
        assert reply["ok"] is False and reply["error"], (garbage, reply)
    assert runtime_ping(p.data) == pid
