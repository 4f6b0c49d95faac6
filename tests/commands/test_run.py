"""run: a one-off command in a service's environment."""
import os
import time

from conftest import unique

from dotcloud.state import Store


def test_run_streams_output_and_returns_the_exit_status(cmd, app, platform):
    r = cmd("alice", "run", app, "www", "--", "sh", "-c",
            'echo "out $DOTCLOUD_PROJECT $DOTCLOUD_SERVICE_NAME"; echo err >&2; pwd; exit 3')
    assert r.code == 3, r.text
    assert r.out.splitlines() == [f"out {app} www",
                                  str(platform.data / "releases" / app / "v1" / "src")]
    assert r.err == "err\n"
    r = cmd("alice", "run", app, "www", "--", "python", "-c", "import wsgi; print(wsgi.application)")
    assert r.code == 0 and "<function application" in r.out, r.text


def test_run_sees_variables_and_never_uses_a_shell(cmd, app):
    assert cmd("alice", "var", "set", app, "SECRET=a b;c").code == 0
    r = cmd("alice", "run", app, "www", "--", "printenv", "SECRET")
    assert (r.code, r.out) == (0, "a b;c\n")
    r = cmd("alice", "run", app, "www", "--", "printenv", "DYNO")
    assert (r.code, r.out) == (0, "run.1\n")
    # The app's own wins; empty, there is none (apps test whether it is there).
    assert cmd("alice", "var", "set", app, "DYNO=mine").code == 0
    assert cmd("alice", "run", app, "www", "--", "printenv", "DYNO").out == "mine\n"
    assert cmd("alice", "var", "set", app, "DYNO=").code == 0
    r = cmd("alice", "run", app, "www", "--", "python3", "-c",
            "import os; print('DYNO' in os.environ)")
    assert (r.code, r.out) == (0, "False\n"), r.text
    assert cmd("alice", "var", "unset", app, "DYNO").code == 0
    r = cmd("alice", "run", app, "www", "--", "echo", "$(id)", "`id`", ";", "id", "|", "x")
    assert (r.code, r.out) == (0, "$(id) `id` ; id | x\n")
    assert cmd("alice", "var", "unset", app, "SECRET").code == 0


def test_run_passes_stdin(cmd, app):
    r = cmd("alice", "run", app, "www", "--", "wc", "-c", input=b"x" * 100000)
    assert (r.code, r.out.strip()) == (0, "100000")
    r = cmd("alice", "run", app, "www", "--", "cat", input=b"\xff\xfe binary\n")
    assert r.code == 0 and r.out == "\ufffd\ufffd binary\n"


def test_run_errors(cmd, app):
    r = cmd("alice", "run", app, "www", "--", "no-such-program-here")
    assert r.code == 127 and "no-such-program-here: command not found" in r.err
    r = cmd("alice", "run", app, "www", "--", "/")
    assert r.code == 127 and "/: permission denied" in r.err
    r = cmd("alice", "run", app, "db", "--", "true")
    assert r.code == 1 and "has no service 'db'" in r.err
    r = cmd("alice", "run", app, "www")
    assert r.code == 1 and "nothing to run" in r.err
    r = cmd("alice", "run", app, "www", "ls")
    assert r.code == 2 and "usage: run APP SERVICE [--timeout SECONDS] -- COMMAND" in r.err
    r = cmd("alice", "run", app, "www", "--timeout", "0", "--", "true")
    assert r.code == 2 and "--timeout must be between 1 and" in r.err
    r = cmd("alice", "run", app, "../www", "--", "true")
    assert r.code == 1 and "invalid service name" in r.err
    empty = unique("norun")
    assert cmd("alice", "create", empty).code == 0
    r = cmd("alice", "run", empty, "www", "--", "true")
    assert r.code == 1 and "nothing is deployed yet" in r.err


def test_run_in_an_instance_whose_spec_cannot_be_read_says_so(cmd, app, platform):
    store = Store(platform.data / "dotcloud.db")
    try:
        ids = [i.id for i in store.instances(app) if i.desired == "run" and i.service == "www"]
        saved = {i: store.db.execute("SELECT spec FROM instances WHERE id=?", (i,)).fetchone()[0]
                 for i in ids}
        try:
            store.db.execute(f"UPDATE instances SET spec='{{oops' WHERE id IN "
                             f"({','.join(map(str, ids))})")
            r = cmd("alice", "run", app, "www", "--", "true")
        finally:
            for i, text in saved.items():
                store.db.execute("UPDATE instances SET spec=? WHERE id=?", (text, i))
    finally:
        store.close()
    assert r.code == 1 and r.out == "", r.text
    assert "www.0 cannot be run in: instance spec is not JSON" in r.err
    assert len(r.err.strip().splitlines()) == 1, r.err


def test_run_is_killed_at_its_timeout(cmd, app):
    marker = unique_sleep()
    t0 = time.monotonic()
    r = cmd("alice", "run", app, "www", "--timeout", "1", "--", "sh", "-c",
            f"echo begun; sleep {marker}")
    assert r.code == 124, r.text
    assert r.out == "begun\n" and "sh did not finish in 1s; killed" in r.err
    assert pids_with(marker) == []
    print(f"run --timeout 1 returned after {time.monotonic() - t0:.2f}s")


def test_run_is_killed_when_the_client_hangs_up(cmd, app):
    marker = unique_sleep()
    script = f"sleep 3000 & sleep {marker} & echo started; wait"
    proc = cmd.popen("alice", "run", app, "www", "--", "sh", "-c", script)
    try:
        assert proc.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 10
        while not pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_with(marker), "the command runs"
        group = os.getpgid(pids_with(marker)[0])
        assert len(pids_in_group(group)) == 3   # sh and its two sleeps
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while pids_in_group(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_in_group(group) == [], "the whole process group is gone"


def test_background_processes_do_not_outlive_the_command(cmd, app):
    marker = unique_sleep()
    r = cmd("alice", "run", app, "www", "--", "sh", "-c",
            f"(sleep {marker} >/dev/null 2>&1 &); echo done")
    assert (r.code, r.out) == (0, "done\n")
    deadline = time.monotonic() + 10
    while pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids_with(marker) == []


def unique_sleep() -> str:
    """A sleep duration no other process on the machine uses: a marker we can find."""
    return f"3000.{time.time_ns() % 10**9:09d}"


def _procs():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = stat.rsplit(") ", 1)[1].split()
            if fields[0] != "Z":
                yield int(pid), int(fields[2]), cmdline


def pids_with(marker: str) -> list[int]:
    return [pid for pid, _, cmdline in _procs() if cmdline == f"sleep\0{marker}\0".encode()]


def pids_in_group(pgid: int) -> list[int]:
    return [pid for pid, group, _ in _procs() if group == pgid]
