"""The instance shim with real processes: output, supervision, stop, kill, identity.

Every shim here is started the way the runtime daemon starts it
(shimctl.spawn) with short backoff and grace values. Waits are bounded by
generous deadlines that only guard against hangs; assertions never depend
on how fast the machine is.
"""
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime import shimctl

PY = sys.executable
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
LINE_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([A-Za-z0-9_.-]+): (.*)$")
DEADLINE = 15.0


def wait_until(predicate, timeout=DEADLINE, what="condition"):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def reap(pid, timeout=DEADLINE):
    """Exit code of our child pid, waiting for it (the daemon's job in production)."""
    def done():
        got, status = os.waitpid(pid, os.WNOHANG)
        return (os.waitstatus_to_exitcode(status),) if got else None
    return wait_until(done, timeout, f"pid {pid} to exit")[0]


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def py(code, cwd):
    return {"argv": [PY, "-c", code], "cwd": str(cwd), "env": dict(ENV)}


def sh(script, cwd):
    return {"argv": ["/bin/sh", "-c", script], "cwd": str(cwd), "env": dict(ENV)}


class Instance:
    """One shim's files, started through shimctl like the daemon does."""

    def __init__(self, root: Path, processes: dict, **options):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.spec_path = root / "spec.json"
        self.log_path = Path(options.pop("log_path", root / "logs" / "www.0.log"))
        self.status_path = root / "state" / "status.json"
        self.pid_path = root / "state" / "shim.pid"
        spec = {"instance": "hello.www.0#1", "processes": processes,
                "log_path": str(self.log_path), "status_path": str(self.status_path),
                "pid_path": str(self.pid_path), "stop_grace": 0.5, "backoff_initial": 0.05,
                "backoff_max": 0.4, "stable_after": 5.0, "crash_loop_restarts": 3}
        spec.update(options)
        self.spec_path.write_text(json.dumps(spec))
        self.pid = None

    def start(self):
        self.pid = shimctl.spawn(self.spec_path)
        wait_until(lambda: (self.status() or {}).get("shim_pid") == self.pid,
                   what="first status")
        return self

    def status(self):
        return shimctl.read_status(self.status_path)

    def process(self, name):
        return self.status()["processes"][name]

    def timed_records(self, path=None):
        """(epoch seconds, process name, text) for every line of the log."""
        try:
            text = Path(path or self.log_path).read_text()
        except FileNotFoundError:
            return []
        out = []
        # A record being written as we read may show only in part: skip it.
        for line in text[:text.rfind("\n") + 1].splitlines():
            m = LINE_RE.match(line)
            assert m, f"malformed log line {line!r}"
            at = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
            out.append((at.replace(tzinfo=datetime.timezone.utc).timestamp(),
                        m.group(2), m.group(3)))
        return out

    def records(self, path=None):
        """(process name, text) for every line of the log."""
        return [(name, text) for _, name, text in self.timed_records(path)]

    def lines(self, name):
        return [text for who, text in self.records() if who == name]

    def wait_line(self, name, pattern):
        rx = re.compile(pattern)
        return wait_until(lambda: next((t for t in self.lines(name) if rx.search(t)), None),
                          what=f"{name}: {pattern}")

    def stop(self):
        shimctl.stop(self.pid)
        return reap(self.pid)


@pytest.fixture
def shims(tmp_path):
    started = []

    def make(processes, name="i", **options):
        inst = Instance(tmp_path / name, processes, **options)
        started.append(inst)
        return inst
    yield make
    for inst in started:
        kill_shim(inst)


def kill_shim(inst) -> None:
    """SIGKILL a shim a test started, and reap it (what its children do is the test's)."""
    if inst.pid is not None:
        try:
            os.kill(inst.pid, signal.SIGKILL)
            os.waitpid(inst.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_output_reaches_log_with_timestamps_and_names(shims, tmp_path):
    code = r"""
import os, sys
print("hello world", flush=True)
print("oops", file=sys.stderr, flush=True)
print("env=" + ",".join(sorted(os.environ)), flush=True)
print("cwd=" + os.getcwd(), flush=True)
print("stdin=" + os.readlink("/proc/self/fd/0"), flush=True)
print("own_group=%s" % (os.getpgrp() == os.getpid()), flush=True)
sys.stdout.buffer.write(b"bad \xff byte\n" + b"x" * 40000 + b"\npartial")
sys.stdout.flush()
"""
    inst = shims({"web": py(code, tmp_path), "other": sh("echo from other; sleep 60", tmp_path)},
                 backoff_initial=30, backoff_max=30).start()
    inst.wait_line("web", r"\[dotcloud\] exited status=0, restarting in 30.0s")
    web = inst.lines("web")
    assert web[0].startswith("[dotcloud] started pid=")
    assert ["hello world", "oops"] == [t for t in web if t in ("hello world", "oops")]
    assert "env=LANG,PATH" in web
    assert f"cwd={tmp_path}" in web
    assert "stdin=/dev/null" in web
    assert "own_group=True" in web
    assert "bad \ufffd byte" in web
    assert ["x" * 16384, "x" * 16384, "x" * 7232] == [t for t in web if t.startswith("xxx")]
    assert web.index("partial") == len(web) - 2  # flushed at close, before the exit event
    assert "from other" in inst.lines("other")
    # The status file is written just after the event line.
    wait_until(lambda: inst.process("web")["state"] == "backoff", what="backoff status")
    status = inst.status()
    assert status["processes"]["web"]["last_lines"][-1] == "partial"
    assert status["processes"]["other"]["state"] == "running"


def test_crash_loop_backs_off_and_is_reported_without_disturbing_others(shims, tmp_path):
    inst = shims({"web": sh("echo boom; exit 3", tmp_path),
                  "sig": sh("kill -KILL $$", tmp_path),
                  "ok": py("import time; time.sleep(60)", tmp_path)}).start()
    wait_until(lambda: inst.process("web")["restarts"] >= 5, what="five restarts")
    status = inst.status()
    web = status["processes"]["web"]
    assert web["state"] == "crashed" and status["state"] == "crashed"
    assert web["last_exit"] == 3 and web["last_exit_at"] > 0
    assert "boom" in web["last_lines"]
    assert status["processes"]["ok"]["state"] == "running"
    assert status["processes"]["ok"]["restarts"] == 0
    wait_until(lambda: inst.process("sig")["last_exit"] == -9, what="sig exit")

    exits = [t for t in inst.lines("web") if "restarting in" in t]
    assert [delay_of(t) for t in exits[:5]] == [0.05, 0.1, 0.2, 0.4, 0.4]
    assert ["crash loop" in t for t in exits[:5]] == [False, False, False, True, True]
    assert "exited status=3, crash loop (3 restarts without running 5.0s)" in exits[3]
    assert any("killed by SIGKILL, restarting in" in t for t in inst.lines("sig"))
    # The delay is a lower bound: no restart ever comes sooner.
    web = [(at, text) for at, name, text in inst.timed_records() if name == "web"]
    for (t0, text), (t1, after) in zip(web, web[1:]):
        if "restarting in" in text and after.startswith("[dotcloud] started"):
            assert t1 - t0 >= delay_of(text) - 0.001  # stamps are cut to ms


def delay_of(event):
    return float(re.search(r"restarting in ([\d.]+)s", event).group(1))


def test_stable_run_resets_backoff_and_leaves_crash_loop(shims, tmp_path):
    script = ("n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; "
              "echo run=$n; [ $n -eq 4 ] && { sleep 1.3; exit 4; }; "
              "[ $n -ge 5 ] && exec sleep 60; exit 1")
    inst = shims({"web": sh(script, tmp_path)}, stable_after=1.0).start()
    inst.wait_line("web", "^run=5$")
    wait_until(lambda: inst.process("web")["state"] == "running", what="running")
    events = [t for t in inst.lines("web") if t.startswith("[dotcloud]")]
    assert [delay_of(t) for t in events if "restarting" in t] == [0.05, 0.1, 0.2, 0.05]
    assert any("out of the crash loop" in t for t in events)
    assert "crash loop" not in events[-2]  # the exit after the stable run
    status = inst.process("web")
    assert status["restarts"] == 4 and status["last_exit"] == 4


def test_sigterm_stops_everything_then_sigkills_what_ignores_it(shims, tmp_path):
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")
    graceful_child = ("import signal, sys, time\n"
                      "def bye(*_): print('child got SIGTERM', flush=True); sys.exit(0)\n"
                      "signal.signal(signal.SIGTERM, bye)\nprint('child ready', flush=True)\n"
                      "time.sleep(60)")
    inst = shims({
        "stubborn": py(stubborn, tmp_path),
        "shell": dict(sh('"$PYBIN" -c "$CHILD" & echo bg=$!; sleep 60 & echo bg=$!; wait',
                         tmp_path), env={**ENV, "PYBIN": PY, "CHILD": graceful_child}),
        "polite": py("import os, time; print('pid=%d' % os.getpid(), flush=True); "
                     "time.sleep(60)", tmp_path),
        "crashy": sh("exit 1", tmp_path),
    }, backoff_initial=60, backoff_max=60).start()
    inst.wait_line("stubborn", "^ready$")
    wait_until(lambda: len([t for t in inst.lines("shell") if t.startswith("bg=")]) == 2,
               what="background pids")
    inst.wait_line("polite", "^pid=")
    inst.wait_line("shell", "^child ready$")
    inst.wait_line("crashy", "restarting in")
    before = inst.status()["processes"]
    pids = [p["pid"] for p in before.values() if p["pid"]]
    pids += [int(t[3:]) for t in inst.lines("shell") if t.startswith("bg=")]
    assert len(pids) == 5

    assert inst.stop() == 0
    assert all(gone(pid) for pid in pids)
    assert not inst.pid_path.exists()
    status = inst.status()
    assert status["state"] == "stopped"
    assert {p["state"] for p in status["processes"].values()} == {"stopped"}
    assert status["processes"]["stubborn"]["last_exit"] == -9
    assert status["processes"]["polite"]["last_exit"] == -15
    assert "[dotcloud] still running after 0.5s, sending SIGKILL" in inst.lines("stubborn")
    assert "[dotcloud] stopped (killed by SIGKILL)" in inst.lines("stubborn")
    assert "[dotcloud] stopped (killed by SIGTERM)" in inst.lines("polite")
    assert "child got SIGTERM" in inst.lines("shell")  # the whole group was asked first
    assert any("while waiting to restart" in t for t in inst.lines("crashy"))
    records = inst.records()
    first_stop = next(i for i, (_, t) in enumerate(records) if "stopping" in t)
    assert not any("started" in t for _, t in records[first_stop:])


def test_shim_survives_what_its_children_do(shims, tmp_path):
    flood = "import sys\nwhile True: sys.stdout.write('y' * 999 + '\\n')"
    inst = shims({
        "flood": py(flood, tmp_path),
        "closer": py("import os, time; os.close(1); os.close(2); time.sleep(60)", tmp_path),
        "forker": sh("sleep 60 & echo bg=$!; exit 0", tmp_path),
        "instant": {"argv": ["/bin/true"], "cwd": str(tmp_path), "env": {}},
    }, log_max_bytes=200_000, log_keep=1).start()
    wait_until(lambda: inst.process("instant")["restarts"] >= 3, what="instant restarts")
    wait_until(lambda: inst.process("forker")["restarts"] >= 2, what="forker restarts")
    wait_until(lambda: Path(f"{inst.log_path}.1").exists(), what="rotation under flood")
    status = inst.status()
    assert status["processes"]["closer"]["state"] == "running"
    assert status["processes"]["flood"]["state"] == "running"
    # The status is written at each event (the restarts of the others): one
    # after the flood's first lines, which a loaded machine may start late.
    tail = wait_until(lambda: inst.process("flood")["last_lines"], what="the flood's tail")
    assert tail[-1] == "y" * 500  # tails are cut
    # What the forker left in its group was killed when it exited.
    leftovers = [int(t[3:]) for t in status["processes"]["forker"]["last_lines"]]
    wait_until(lambda: all(gone(pid) for pid in leftovers[:-1]), what="leftovers killed")
    assert shimctl.alive(inst.pid_path, inst.spec_path) == inst.pid
    assert inst.stop() == 0
    assert os.path.getsize(inst.log_path) <= 200_000 + 64 * 1024 + 1100
    assert not Path(f"{inst.log_path}.2").exists()


def test_leftovers_of_an_exited_process_are_stopped_before_its_restart(shims, tmp_path):
    inst = shims({
        "polite": sh("sleep 60 & echo bg=$!; exit 0", tmp_path),
        "stubborn": sh("trap '' TERM; sleep 60 & echo bg=$!; exit 0", tmp_path),
    }, backoff_initial=0.3, backoff_max=0.3).start()
    wait_until(lambda: all(inst.process(n)["restarts"] >= 2 for n in ("polite", "stubborn")),
               what="two restarts each")
    for name in ("polite", "stubborn"):
        events = [t for t in inst.lines(name) if t.startswith("[dotcloud] exited")]
        assert "exited status=0, stopping the processes it left in its group" in events[0]
        # Its last words are logged before the line saying it exited.
        started, said, exited = inst.lines(name)[:3]
        assert said.startswith("bg=") and exited.startswith("[dotcloud] exited"), (said, exited)
        first = int(said[3:])
        wait_until(lambda: gone(first), what=f"{name}'s first leftover gone")
    # One ignored the SIGTERM and was killed just before the restart.
    assert any("killed what was left" in t for t in inst.lines("stubborn"))
    assert inst.stop() == 0


def test_processes_that_cannot_start_are_retried(shims, tmp_path):
    inst = shims({
        "missing": {"argv": [str(tmp_path / "nope")], "cwd": str(tmp_path), "env": {}},
        "badcwd": {"argv": ["/bin/true"], "cwd": str(tmp_path / "nodir"), "env": {}},
        "web": py("import time; time.sleep(60)", tmp_path),
    }).start()
    for name in ("missing", "badcwd"):
        wait_until(lambda: inst.process(name)["state"] == "crashed", what=f"{name} crashed")
        assert inst.process(name)["last_exit"] == 127
        events = inst.lines(name)
        assert events[0].startswith("[dotcloud] failed to start (")
        assert "No such file or directory" in events[0]
    assert inst.process("web")["state"] == "running"
    assert inst.stop() == 0


def test_rotation_by_size_keeps_the_newest(shims, tmp_path):
    code = ("import sys, time\nfor i in range(3000): print('line %05d' % i + '.' * 80)\n"
            "sys.stdout.flush()\ntime.sleep(60)")
    inst = shims({"web": py(code, tmp_path)}, log_max_bytes=50_000, log_keep=2).start()
    base = str(inst.log_path)
    paths = (base + ".2", base + ".1", base)
    # The last line may have been rotated out of the current file already.
    wait_until(lambda: any(t.startswith("line 02999") for p in paths
                           for _, t in inst.records(p)), what="the last line")
    assert os.path.exists(base + ".1") and os.path.exists(base + ".2")
    assert not os.path.exists(base + ".3")
    for path in (base, base + ".1", base + ".2"):
        assert os.path.getsize(path) <= 50_000 + 64 * 1024 + 200  # a chunk and a record
    kept = [t for p in paths for _, t in inst.records(p)]
    numbers = [int(t[5:10]) for t in kept if t.startswith("line ")]
    assert numbers == list(range(numbers[0], 3000))
    assert numbers[0] > 0  # the oldest went with the files past log_keep


def test_two_shims_share_one_log_without_losing_a_line(shims, tmp_path):
    log = tmp_path / "logs" / "www.0.log"
    # Both write at once, a line a write, so their rotations contend.
    code = ("import os, time\nwhile not os.path.exists('go'): time.sleep(0.01)\n"
            "for i in range(2000): print('%s %05d' % (TAG, i) + '-' * 60, flush=True)\n"
            "time.sleep(60)")
    a = shims({"web": py(code.replace("TAG", "'A'"), tmp_path)}, name="a", log_path=log,
              log_max_bytes=5_000, log_keep=500)
    b = shims({"web": py(code.replace("TAG", "'B'"), tmp_path)}, name="b", log_path=log,
              log_max_bytes=5_000, log_keep=500)
    a.start()
    b.start()
    (tmp_path / "go").touch()
    files = lambda: sorted(log.parent.glob("www.0.log.*"),  # oldest first
                           key=lambda p: -int(p.suffix[1:])) + [log]

    def all_lines():
        texts = [t for f in files() for _, t in a.records(f) if t[:2] in ("A ", "B ")]
        return texts if len(texts) >= 4000 else None
    texts = wait_until(all_lines, what="4000 lines")
    assert len(texts) == 4000
    for tag in "AB":
        assert sorted(int(t[2:7]) for t in texts if t[0] == tag) == list(range(2000))
    assert len(files()) > 5
    # Each rotated file was full: no writer rotated what another had just rotated.
    assert all(f.stat().st_size > 5_000 for f in files()[:-1])


def test_killing_the_shim_kills_its_processes(shims, tmp_path):
    inst = shims({"web": py("import time; print('up', flush=True); time.sleep(60)", tmp_path),
                  "worker": sh("exec sleep 60", tmp_path)}).start()
    inst.wait_line("web", "^up$")
    pids = [p["pid"] for p in inst.status()["processes"].values()]
    shimctl.kill(inst.pid)
    assert reap(inst.pid) == -9
    wait_until(lambda: all(gone(pid) for pid in pids), what="children to die with the shim")


def test_shim_outlives_the_daemon_that_spawned_it(shims, tmp_path):
    inst = shims({"web": py("import time; print('up', flush=True); time.sleep(60)", tmp_path)})
    daemon = subprocess.Popen(
        [PY, "-c", "import sys, time; from runtime import shimctl; "
                   "print(shimctl.spawn(sys.argv[1]), flush=True); time.sleep(60)",
         str(inst.spec_path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": shimctl.PACKAGE_ROOT})
    shim_pid = int(daemon.stdout.readline())
    inst.wait_line("web", "^up$")
    daemon.kill()
    daemon.wait()
    daemon.stdout.close()
    assert shimctl.alive(inst.pid_path, inst.spec_path) == shim_pid
    assert inst.status()["processes"]["web"]["state"] == "running"
    assert os.getsid(shim_pid) == shim_pid  # its own session: no terminal signal reaches it
    shimctl.stop(shim_pid)
    assert shimctl.wait_stopped(inst.pid_path, inst.spec_path, DEADLINE)
    assert inst.status()["state"] == "stopped"


def test_alive_checks_identity(shims, tmp_path):
    inst = shims({"web": py("import time; time.sleep(60)", tmp_path)}).start()
    assert shimctl.alive(inst.pid_path, inst.spec_path) == inst.pid
    assert shimctl.alive(inst.pid_path, tmp_path / "other-spec.json") is None
    fake = tmp_path / "fake.pid"
    for content in (str(os.getpid()), "garbage", "", "-5", "0", "99999999", "12\x00"):
        fake.write_text(content)
        assert shimctl.alive(fake, inst.spec_path) is None, content
    assert shimctl.alive(tmp_path / "missing.pid", inst.spec_path) is None
    assert not shimctl.wait_stopped(inst.pid_path, inst.spec_path, 0.1)
    shimctl.stop(inst.pid)
    assert shimctl.wait_stopped(inst.pid_path, inst.spec_path, DEADLINE)
    assert reap(inst.pid) == 0
    shimctl.stop(inst.pid)  # gone now: no error
    shimctl.kill(inst.pid)


def test_read_status_missing_or_garbage(tmp_path):
    assert shimctl.read_status(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert shimctl.read_status(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert shimctl.read_status(tmp_path / "list.json") is None


def test_second_shim_for_the_same_spec_refuses(shims, tmp_path):
    inst = shims({"web": py("import time; time.sleep(60)", tmp_path)}).start()
    out = run_shim(str(inst.spec_path))
    assert out.returncode == 1
    assert f"already supervised by pid {inst.pid}" in out.stderr
    assert shimctl.alive(inst.pid_path, inst.spec_path) == inst.pid


def test_unwritable_status_and_log_do_not_stop_the_shim(tmp_path):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    inst = Instance(tmp_path / "i", {"web": py("import time; print('up', flush=True); "
                                               "time.sleep(60)", tmp_path)},
                    log_path=tmp_path / "blocker" / "www.0.log")
    spec = json.loads(inst.spec_path.read_text())
    spec["status_path"] = str(tmp_path / "blocker" / "status.json")
    inst.spec_path.write_text(json.dumps(spec))
    # Started in the foreground, to read what it says on stderr.
    shim = subprocess.Popen([PY, "-m", "runtime.shim", str(inst.spec_path)],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": shimctl.PACKAGE_ROOT})
    try:
        wait_until(lambda: shimctl.alive(inst.pid_path, inst.spec_path), what="pid file")
        web = wait_until(lambda: [p for p in children_of(shim.pid)], what="web started")
        assert shim.poll() is None
    finally:
        shim.send_signal(signal.SIGINT)  # Ctrl-C stops it like SIGTERM
        _, err = shim.communicate(timeout=DEADLINE)
    assert shim.returncode == 0
    assert "status_write_failed" in err and "log_write_failed" in err
    assert all(gone(pid) for pid in web)


def children_of(pid):
    """Pids whose parent is pid, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError):
            pass
    return found


def test_unwritable_pid_file_exits_1(tmp_path):
    (tmp_path / "blocker").write_text("")
    inst = Instance(tmp_path / "i", {"web": py("print('never')", tmp_path)})
    spec = json.loads(inst.spec_path.read_text())
    spec["pid_path"] = str(tmp_path / "blocker" / "shim.pid")
    inst.spec_path.write_text(json.dumps(spec))
    out = run_shim(str(inst.spec_path))
    assert out.returncode == 1
    assert out.stderr.startswith("shim: cannot write pid file")
    assert not inst.log_path.exists()  # nothing was started


def run_shim(*args):
    env = {**os.environ, "PYTHONPATH": shimctl.PACKAGE_ROOT}
    return subprocess.run([PY, "-m", "runtime.shim", *args], capture_output=True, text=True,
                          env=env, timeout=DEADLINE)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{oops", "cannot read spec file"),
    ("[]", "spec must be a JSON object"),
    ('{"instance": "x", "log_path": "l", "status_path": "s", "pid_path": "p"}', "processes"),
    ('{"instance": "x", "processes": {"web": {"argv": "python", "cwd": "/"}}, "log_path": "l",'
     ' "status_path": "s", "pid_path": "p"}', "processes.web.argv"),
])
def test_bad_spec_exits_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    out = run_shim(str(path))
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_no_spec_argument_exits_2():
    out = run_shim()
    assert out.returncode == 2 and "usage:" in out.stderr
