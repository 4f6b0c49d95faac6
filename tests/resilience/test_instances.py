"""Issue 5: instances under fire. Kill one of two instances, kill a shim,
make an app crash-loop and feed the runtime bad rows, while a client
hammers an app and counts what it saw."""
import json
import re
import time
from pathlib import Path

from loadgen import Load
from platform_helpers import git_repo, python_app
from resilience_helpers import (alive, daemon_pid, get_direct, instance, instance_log, instances,
                                kill9, process_pid, runtime_pass,
                                shims_for, wait_until)

from dotcloud.state import Store

TWO = "www:\n  type: python\n  instances: 2\n"
CRASHY = '''
import os
if os.path.exists(os.path.join(os.environ["HOME"], "crash")):
    print("crashy: found the crash marker, giving up", flush=True)
    raise RuntimeError("crashy cannot boot")

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"crashy ok"]
'''


def push(platform, repo: Path, app: str) -> None:
    r = platform.push("alice", repo, app)
    assert r.code == 0, r.text


def two_instances(platform, tmp_path, app):
    """Deploy `app` (answering its name) with two instances; return them and
    the app process pid of the first."""
    push(platform, git_repo(tmp_path / app, {**python_app(app), "dotcloud.yml": TWO}), app)
    first, second = instances(platform.data, app)
    return first, second, process_pid(platform.data, first.id)


def test_kill_one_of_two_instances_under_load(own_platform, tmp_path):
    p = own_platform
    first, second, master = two_instances(p, tmp_path, "two")
    with Load(p.http_port, "two.localhost", clients=6) as load:
        load.wait_ok(100)
        kill9(master)
        killed_at = time.monotonic()
        new = wait_until(lambda: (lambda m: m if m and m != master else None)(
            process_pid(p.data, first.id)), what="a new app process")
        wait_until(lambda: get_direct(first.port, "two.localhost") == (200, "two"),
                   what="the instance to answer again")
        back_after = time.monotonic() - killed_at
        load.wait_ok(100)
    print(f"\nkill -9 of one instance's app process: back after {back_after:.2f}s; "
          f"{load.summary()}")
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) == {"two"}
    assert instance(p.data, first.id).pid == first.pid, "the shim restarted it, not the runtime"
    assert alive(new) and process_pid(p.data, second.id)
    wait_until(lambda: instance(p.data, first.id).restarts >= 1, 5, "the restart recorded")
    log = instance_log(p.data, "two", "www.0")
    assert f"[dotcloud] started pid={master}" in log
    assert re.search(r"Z web: \[dotcloud\] killed by SIGKILL, .*restarting in 1\.0s", log), log
    assert f"[dotcloud] started pid={new}" in log


def test_kill_shim_under_load(own_platform, tmp_path):
    """The runtime starts a new shim, after killing what the old one left behind."""
    p = own_platform
    first, _, master = two_instances(p, tmp_path, "shim")
    with Load(p.http_port, "shim.localhost", clients=6) as load:
        load.wait_ok(100)
        kill9(first.pid)
        killed_at = time.monotonic()
        shim = wait_until(lambda: (lambda i: i.pid if i.pid and i.pid != first.pid else None)(
            instance(p.data, first.id)), what="a new shim")
        wait_until(lambda: get_direct(first.port, "shim.localhost") == (200, "shim"),
                   what="the instance to answer again")
        back_after = time.monotonic() - killed_at
        load.wait_ok(100)
    print(f"\nkill -9 of one instance's shim: back after {back_after:.2f}s; {load.summary()}")
    assert load.failures == 0, load.errors[:5]
    assert shims_for(p.data, first.id) == [shim]
    assert not alive(master)
    wait_until(lambda: instance(p.data, first.id).state == "running", 5, "state running")
    # The new shim counts from 0; the instance's count goes on (status shows it).
    wait_until(lambda: instance(p.data, first.id).restarts == 1, 5, "the restart counted")
    log = instance_log(p.data, "shim", "www.0")
    assert (f"web: [dotcloud] the instance's shim (pid {first.pid}) died (killed by SIGKILL); "
            "the runtime starts a new one in 0.0s") in log, log[-2000:]
    assert "web: [dotcloud] stopping what the dead shim left running (pids " in log


def test_crash_loop_is_reported_and_other_apps_serve(own_platform, tmp_path):
    p = own_platform
    push(p, git_repo(tmp_path / "calm", python_app("calm")), "calm")
    push(p, git_repo(tmp_path / "crashy", {"wsgi.py": CRASHY, "requirements.txt": ""}), "crashy")
    [inst] = instances(p.data, "crashy")
    home = Path(inst.spec.env["HOME"])
    runtime = daemon_pid(p.data, "runtime")
    with Load(p.http_port, "calm.localhost", clients=4) as load:
        load.wait_ok(50)
        (home / "crash").write_text("")
        kill9(process_pid(p.data, inst.id))
        crashed = wait_until(lambda: (lambda i: i if i.state == "crashed" else None)(
            instance(p.data, inst.id)), 60, "the crash loop to be reported")
        load.wait_ok(50)
    print(f"\ncrash loop next door: {load.summary()}")
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) == {"calm"}
    # gunicorn exits 3 when a worker fails to boot (or 1, when two fail at once)
    assert crashed.restarts >= 3 and crashed.last_exit in (1, 3), crashed
    assert daemon_pid(p.data, "runtime") == runtime
    assert p.get("crashy.localhost")[0] in (502, 503)

    r = p.ssh("alice", "status", "crashy", "--json")
    assert r.code == 0, r.text
    [row] = json.loads(r.out)["instances"]
    assert row["state"] == "crashed" and row["last_exit"] in (1, 3)
    # The last lines of its log (gunicorn's shutdown noise, often: they are
    # what it printed last), to tell the crash without another command.
    log = instance_log(p.data, "crashy", "www.0")
    assert row["last_lines"] and all(line in log for line in row["last_lines"]), row
    r = p.ssh("alice", "status", "crashy")
    assert re.search(r"www\.0 is crashed: last exit status [13]\b", r.out), r.text


def test_bad_instance_rows_never_stop_the_runtime(own_platform, tmp_path):
    """Rows the runtime cannot start are backed off and reported, one by one;
    the runtime goes on serving every other instance."""
    p = own_platform
    runtime = daemon_pid(p.data, "runtime")
    store = Store(p.data / "dotcloud.db")
    try:
        bad = [store.add_instance("ghost", 0, "www", n, 29990 + n, spec)
               for n, spec in enumerate([
                   {"nothing": "useful"},
                   {"processes": {"web": {"argv": [], "cwd": "/", "env": {}}},
                    "env": {}, "home": "/tmp", "log": "ghost/www.1.log"},
                   {"processes": {"web": {"argv": ["/nonexistent/binary"], "cwd": "/",
                                          "env": {}}},
                    "env": {}, "home": "/tmp", "log": "ghost/www.2.log"}])]
        store.db.execute("UPDATE instances SET spec='{not json' WHERE id=?", (bad[0].id,))
        store.set_desired([b.id for b in bad], "run")
    finally:
        store.close()
    assert runtime_pass(p.data)
    states = {b.id: wait_until(lambda: (lambda i: i.state if i.state in ("backoff", "crashed")
                                        else None)(instance(p.data, b.id)), 20,
                               f"instance {b.id} reported failing") for b in bad}
    print(f"\nbad rows: {states}")
    # The one whose process cannot start is retried by its shim, which lives on.
    assert alive(instance(p.data, bad[2].id).pid)
    push(p, git_repo(tmp_path / "after", python_app("after bad rows")), "afterbad")
    assert p.get("afterbad.localhost")[:2] == (200, "after bad rows")
    assert daemon_pid(p.data, "runtime") == runtime
    store = Store(p.data / "dotcloud.db")
    try:
        store.set_desired([b.id for b in bad], "stop")
    finally:
        store.close()
    for b in bad:
        wait_until(lambda: instance(p.data, b.id).state == "stopped", 20, "bad rows stopped")
