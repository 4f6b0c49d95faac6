"""Issue 5: stopping `up` (Ctrl-C, SIGTERM) stops the daemons; the apps stop
with them by default and keep running with `up --keep-apps`; the next `up`
starts the apps again, or adopts those that kept running."""
import signal
import subprocess
import sys

from platform_helpers import ROOT, git_repo, python_app
from resilience_helpers import (alive, get_direct, instance, instances, kill9, listening,
                                process_pid, shims_for, up_pids, wait_until)


def start_with_app(p, tmp_path, app, *extra):
    p.start(*extra)
    p.add_user("alice", admin=True)
    r = p.push("alice", git_repo(tmp_path / app, python_app(f"{app} body")), app)
    assert r.code == 0, r.text
    [inst] = instances(p.data, app)
    return inst, process_pid(p.data, inst.id), dict(up_pids(p.data)["daemons"])


def stop_up(p, signum) -> None:
    p.proc.send_signal(signum)
    assert p.proc.wait(60) == 0


def serves(p, app) -> bool:
    try:
        return p.get(f"{app}.localhost", timeout=2)[:2] == (200, f"{app} body")
    except OSError:
        return False


def test_ctrl_c_stops_daemons_and_apps(fresh_platform, tmp_path):
    p = fresh_platform
    inst, master, daemons = start_with_app(p, tmp_path, "byebye")
    stop_up(p, signal.SIGINT)
    for name, pid in daemons.items():
        assert not alive(pid), f"{name} still running"
    assert not alive(inst.pid) and not alive(master)
    assert not listening(inst.port) and not listening(p.http_port)
    for name in ("up.json", "runtime.json", "runtime.sock", "router.sock"):
        assert not (p.data / "run" / name).exists(), name

    # The next `up` starts what the store says should run.
    p.start()
    wait_until(lambda: serves(p, "byebye"), 30, "the app to be started again")
    again = instance(p.data, inst.id)
    assert again.pid != inst.pid and alive(again.pid)


def test_keep_apps_then_adopt(fresh_platform, tmp_path):
    p = fresh_platform
    inst, master, daemons = start_with_app(p, tmp_path, "stays", "--keep-apps")
    stop_up(p, signal.SIGTERM)
    for name, pid in daemons.items():
        assert not alive(pid), f"{name} still running"
    assert alive(inst.pid) and alive(master)
    assert get_direct(inst.port, "stays.localhost") == (200, "stays body")

    # A new `up` (this time without --keep-apps) adopts the running instance.
    p.start()
    wait_until(lambda: serves(p, "stays"), 30, "the router to serve the app")
    wait_until(lambda: instance(p.data, inst.id).state == "running", 10, "state running")
    assert instance(p.data, inst.id).pid == inst.pid
    assert shims_for(p.data, inst.id) == [inst.pid]
    assert process_pid(p.data, inst.id) == master

    stop_up(p, signal.SIGTERM)
    assert not alive(inst.pid) and not alive(master)
    assert not listening(inst.port)


def test_up_killed_then_started_again_takes_over(fresh_platform, tmp_path):
    p = fresh_platform
    inst, master, daemons = start_with_app(p, tmp_path, "orphan")
    kill9(p.proc.pid)
    p.proc.wait()
    # Its daemons run on unsupervised, holding the ports; the app still serves.
    assert all(alive(pid) for pid in daemons.values())
    assert serves(p, "orphan")

    p.start()
    wait_until(lambda: up_pids(p.data).get("pid") == p.proc.pid
               and not any(alive(pid) for pid in daemons.values()), 30,
               "the new up to replace the daemons the killed one left")
    p.wait_listening()
    wait_until(lambda: serves(p, "orphan"), 30, "the app served through the new router")
    new = up_pids(p.data)["daemons"]
    assert set(new) == set(daemons) and not set(new.values()) & set(daemons.values())
    # the runtime was replaced, the app was not: the new runtime adopted it
    wait_until(lambda: instance(p.data, inst.id).state == "running", 10, "state running")
    assert instance(p.data, inst.id).pid == inst.pid and process_pid(p.data, inst.id) == master

    # A second `up` on the same data directory refuses and changes nothing.
    second = subprocess.run(
        [sys.executable, "-m", "dotcloud.cli", "--data", str(p.data), "up",
         "--ssh-port", "0", "--http-port", "0"],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert second.returncode == 2
    assert second.stderr.strip().endswith(
        f"dotcloud-server: another up is running for {p.data} (pid {p.proc.pid})")
    assert up_pids(p.data)["daemons"] == new and all(alive(pid) for pid in new.values())
    assert serves(p, "orphan")
