"""logs (tail, filters, -f, JSON lines) and status, including a crash loop."""
import json
import os
import select
import time

import pytest
from conftest import deploy_env_app, unique

# www serves; its "flaky" process prints a line and exits 3 a moment after each start.
CRASHY_YML = """www:
  type: python
  processes:
    flaky: sh -c 'sleep 1.5; echo flaky is giving up; exit 3'
"""


@pytest.fixture(scope="module")
def crashy(platform, tmp_path_factory):
    name = unique("crashy")
    deploy_env_app(platform, tmp_path_factory.mktemp("c"), name, {"dotcloud.yml": CRASHY_YML})
    return name


def wait_for(predicate, timeout=60.0, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_logs_tail_prefixes_and_filters(cmd, platform, app, crashy):
    platform.get(f"{app}.localhost", "/hello-from-test")
    r = cmd("alice", "logs", app)
    assert r.code == 0, r.text
    lines = r.out.splitlines()
    assert lines and all(l.startswith("[www.0] 20") for l in lines)
    assert any("GET /hello-from-test" in l for l in lines)
    times = [l.split()[1] for l in lines]
    assert times == sorted(times)
    assert len(cmd("alice", "logs", app, "-n", "2").out.splitlines()) == 2
    assert cmd("alice", "logs", app, "-n0").out == ""
    assert cmd("alice", "logs", app, "www.0", "-n", "3").out.splitlines() == lines[-3:]
    r = cmd("alice", "logs", app, "worker")
    assert r.code == 0 and "no logs yet for worker" in r.err
    r = cmd("alice", "logs", app, "-n", "lots")
    assert r.code == 2 and "wants a number" in r.err
    r = cmd("alice", "logs", app, "../../etc")
    assert r.code == 2 and "expected SERVICE or SERVICE.N" in r.err
    r = cmd("alice", "logs", app, "Www.0")
    assert r.code != 0 and "invalid service name" in r.err
    r = cmd("alice", "logs", app, "--json", "-n", "1")
    [doc] = [json.loads(l) for l in r.out.splitlines()]
    assert set(doc) == {"time", "instance", "service", "number", "process", "line"}
    assert doc["instance"] == "www.0" and doc["process"] == "web"


def test_logs_interleave_processes_and_show_platform_events(cmd, crashy):
    lines = wait_for(lambda: [l for l in cmd("alice", "logs", crashy, "-n", "200").out.splitlines()
                              if "flaky" in l and "restarting in" in l])
    assert lines, "the shim's restart events are in the logs"
    out = cmd("alice", "logs", crashy, "-n", "200").out
    assert "flaky: flaky is giving up" in out and " web: " in out


def read_until(proc, text: str, timeout: float = 60) -> str:
    """Lines of proc's stdout up to the one containing text (fails rather than hangs)."""
    seen = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while text.encode() not in seen:
        assert time.monotonic() < deadline, f"never saw {text!r} in {seen[-2000:]!r}"
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"output ended before {text!r}: {seen[-2000:]!r}"
            seen += chunk
    return seen.decode()


def test_logs_follow_streams_and_stops_when_the_client_hangs_up(cmd, platform, app):
    before = ssh_threads(platform)
    proc = cmd.popen("alice", "logs", app, "-f", "-n", "1")
    try:
        read_until(proc, "[www.0] ")   # the tail: following has begun
        platform.get(f"{app}.localhost", "/followed-1")
        assert "[www.0] " in read_until(proc, "GET /followed-1")
        platform.get(f"{app}.localhost", "/followed-2")
        read_until(proc, "GET /followed-2")
        assert ssh_threads(platform) > before
    finally:
        proc.kill()
        proc.wait()
    assert wait_for(lambda: ssh_threads(platform) <= before, timeout=30), \
        "the server stops following once the client is gone"


def ssh_threads(platform) -> int:
    """Threads of the SSH daemon: one per connection and one per channel, plus its own."""
    for child in open(f"/proc/{platform.proc.pid}/task/{platform.proc.pid}/children").read().split():
        try:
            argv = open(f"/proc/{child}/cmdline").read().split("\0")
        except FileNotFoundError:
            continue
        if "ssh" in argv and "dotcloud.cli" in argv:
            return len(os.listdir(f"/proc/{child}/task"))
    raise AssertionError("no ssh daemon found")


def test_status_text_and_json(cmd, app):
    r = cmd("alice", "status", app)
    assert r.code == 0, r.text
    header, row = r.out.splitlines()[:2]
    assert header.split() == ["INSTANCE", "STATE", "PID", "PORT", "UPTIME", "RESTARTS",
                              "LAST", "EXIT", "ROLE"]
    assert row.split()[:2] == ["www.0", "running"] and row.split()[-1] == "active"
    [inst] = cmd.json("alice", "status", app)["instances"]
    assert inst["state"] == "running" and inst["role"] == "active" and inst["restarts"] == 0
    assert inst["pid"] > 0 and 20000 <= inst["port"] <= 29999 and inst["uptime_seconds"] >= 0
    assert inst["processes"]["web"]["state"] == "running"
    assert set(inst) >= {"service", "number", "state", "pid", "port", "uptime_seconds",
                         "restarts", "last_exit", "last_lines", "started"}


def test_a_crash_loop_is_reported_as_crashed(cmd, crashy):
    def crashed():
        [inst] = [i for i in cmd.json("alice", "status", crashy)["instances"]
                  if i["role"] == "active"]
        return inst if inst["state"] == "crashed" else None
    inst = wait_for(crashed)
    assert inst, "the instance is reported crashed"
    assert inst["last_exit"] == 3 and inst["restarts"] >= 3
    assert any("flaky is giving up" in l for l in inst["last_lines"])
    r = cmd("alice", "status", crashy)
    assert "www.0 is crashed: last exit status 3" in r.out
    assert "flaky: flaky is giving up" in r.out
