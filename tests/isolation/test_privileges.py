"""Dropping root (runtime.privileges), through each launch point that uses it:
runtime.limits (builds, hooks, `run`) and the shim (instances, data servers);
the shim spec's `user`; and what crossing uids forbids (signals, environ)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from runtime import apptmp, privileges, shimctl
from runtime.limits import run_limited
from runtime.shimspec import SpecError, parse

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can drop to another uid")
UID = 61990      # in no platform's range of the tests; no account needed for these
REPORT = ("import json; from runtime.privileges import check; "
          "print(json.dumps({**check(), 'groups': __import__('os').getgroups(), "
          "'sid': __import__('os').getsid(0) == __import__('os').getpid()}))")
ROOT = str(Path(__file__).resolve().parents[2])


def report(lines):
    return json.loads(lines[-1])


@needs_root
def test_a_limited_step_runs_as_the_user_with_nothing_left():
    lines = []
    code = run_limited([sys.executable, "-c", REPORT], cwd=ROOT, env={"PYTHONPATH": ROOT},
                       timeout=30, memory_bytes=None, on_line=lines.append, user=(UID, UID))
    assert code == 0, lines
    got = report(lines)
    assert (got["Uid"], got["Gid"], got["groups"]) == (UID, UID, [])
    assert got["CapEff"] == got["CapPrm"] == got["CapBnd"] == got["CapInh"] == 0
    assert got["CapAmb"] == 0 and got["NoNewPrivs"] == 1 and got["sid"]


@needs_root
def test_no_way_back_to_root():
    lines = []
    code = run_limited([sys.executable, "-c", "import os; os.setuid(0)"], cwd="/",
                       env={}, timeout=30, memory_bytes=None, on_line=lines.append,
                       user=(UID, UID))
    assert code == 1 and "PermissionError" in "\n".join(lines)


@needs_root
def test_setuid_programs_give_nothing_back():
    # su is setuid root: under no_new_privs it runs without its privilege and fails.
    lines = []
    code = run_limited(["su", "-c", "id -u", "root"], cwd="/", env={"PATH": "/usr/bin:/bin"},
                       timeout=30, memory_bytes=None, on_line=lines.append, user=(UID, UID))
    assert code != 0 and "0" not in [line.strip() for line in lines]


def test_without_root_only_its_own_uid_is_allowed():
    # As a platform run by another user would be: a child that is nobody.
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                privileges.drop(os.getuid() + 1, os.getgid())
                code = 1
            except PermissionError as e:
                code = 0 if "not root" in str(e) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("value", [[0, 0], ["1", 2], [1], [1, 2, 3], {"uid": 1}, [-5, 5],
                                   [True, 5], [1, 2, "tmp", []], [1, 2, "/t", ["a/b"]],
                                   [1, 2, "/t", "x"], [1, 2, "/t", [""]]])
def test_the_shim_spec_refuses_a_bad_user(value):
    raw = {"instance": "a.www.0#1", "log_path": "/l", "status_path": "/s", "pid_path": "/p",
           "processes": {"web": {"argv": ["/bin/true"], "cwd": "/"}}, "user": value}
    with pytest.raises(SpecError, match=r"^user must be \[uid, gid\], two numbers above 0, "
                       r"or \[uid, gid, tmp directory, \[names in /tmp\]\]$"):
        parse(raw)


def test_the_shim_spec_takes_a_private_tmp():
    raw = {"instance": "a.www.0#1", "log_path": "/l", "status_path": "/s", "pid_path": "/p",
           "processes": {"web": {"argv": ["/bin/true"], "cwd": "/"}},
           "user": [5, 6, "/d/tmp/a", ["keep"]]}
    assert parse(raw).user == (5, 6, "/d/tmp/a", ("keep",))


@needs_root
def test_a_private_tmp_hides_the_hosts_and_keeps_what_is_asked():
    if not privileges.private_tmp_works():
        pytest.skip("this host makes no mount namespaces")
    mine = Path(tempfile.mkdtemp(dir="/var/tmp"))
    kept = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chown(mine, UID, UID)
        (kept / "f").write_text("kept\n")
        os.chmod(kept, 0o755)
        os.chmod(kept / "f", 0o644)
        lines = []
        code = run_limited(["sh", "-c", f"id -u; echo x > /tmp/app-file; ls -A /tmp; "
                                        f"cat /tmp/{kept.name}/f"],
                           cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=30,
                           memory_bytes=None, on_line=lines.append,
                           user=(UID, UID, str(mine), (kept.name,)))
        assert code == 0, lines
        assert lines[0] == str(UID) and lines[-1] == "kept"
        assert sorted(lines[1:-1]) == sorted(["app-file", kept.name])   # nothing of the host's
        assert (mine / "app-file").read_text() == "x\n"
        assert not Path("/tmp/app-file").exists()
    finally:
        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(kept, ignore_errors=True)


@needs_root
def test_the_shim_stays_root_and_its_processes_do_not(tmp_path):
    # In /tmp, not pytest's 0700 directory: the process itself writes nothing there.
    work = Path(tempfile.mkdtemp(dir="/tmp"))
    spec = tmp_path / "shim.json"
    code = REPORT.replace("print(", f"open({str(work / 'r.json')!r}, 'w').write(")
    spec.write_text(json.dumps({
        "instance": "t.www.0#1", "log_path": str(tmp_path / "log"),
        "status_path": str(tmp_path / "status.json"), "pid_path": str(tmp_path / "pid"),
        "user": [UID, UID],
        "processes": {"web": {"argv": [sys.executable, "-c", code + "; import time; "
                                       "time.sleep(60)"],
                              "cwd": "/", "env": {"PYTHONPATH": ROOT}}}}))
    work.chmod(0o1777)
    pid = shimctl.spawn(spec)
    try:
        deadline = time.monotonic() + 30
        while not (work / "r.json").exists() or not (work / "r.json").read_text():
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.05)
        got = json.loads((work / "r.json").read_text())
        assert got["Uid"] == UID and got["CapEff"] == 0 and got["NoNewPrivs"] == 1
        assert privileges.check(f"/proc/{pid}/status")["Uid"] == 0     # the shim
        child = int(json.loads((tmp_path / "status.json").read_text())
                    ["processes"]["web"]["pid"])
        # Another app's uid cannot signal it nor read its environment.
        probe = ("import os, signal, sys\n"
                 f"try:\n    os.kill({child}, signal.SIGTERM)\nexcept PermissionError:\n"
                 "    print('kill denied')\n"
                 f"try:\n    open('/proc/{child}/environ').read()\nexcept PermissionError:\n"
                 "    print('environ denied')\n")
        lines = []
        run_limited([sys.executable, "-c", probe], cwd="/", env={}, timeout=30,
                    memory_bytes=None, on_line=lines.append, user=(UID + 1, UID + 1))
        assert lines == ["kill denied", "environ denied"]
    finally:
        shimctl.stop(pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(work)])


@needs_root
def test_a_program_out_of_the_users_reach_is_named_with_the_directory_to_open():
    from runtime.executor import HostExecutor
    closed = Path(tempfile.mkdtemp(dir="/tmp"))      # 0700, as /root is
    try:
        program = closed / "bin" / "python3"
        program.parent.mkdir()
        program.parent.chmod(0o755)
        program.write_bytes(Path("/bin/true").read_bytes())
        program.chmod(0o755)
        with pytest.raises(PermissionError) as info:
            HostExecutor(user=(UID, UID)).run([str(program)], cwd=Path("/"), env={},
                                              timeout=30, on_line=print)
        assert info.value.strerror == (f"{program} is out of reach of the app's user: {closed} "
                                       f"is closed to others (chmod o+x {closed})")
    finally:
        subprocess.run(["rm", "-rf", str(closed)])


def test_a_private_tmp_keeps_what_the_platform_has_under_tmp_in_sight():
    # The data directory and the platform's own install (its interpreter makes
    # the apps' virtualenvs), each by the entry of /tmp that holds it.
    assert apptmp.keep("/tmp/a/data", "/usr/bin/python3", "/tmp/b/.venv/bin/python",
                       "/tmp/a/x") == ("a", "b")
