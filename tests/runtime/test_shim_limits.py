"""Resource limits for builds and one-off commands, with real commands."""
import resource
import shutil
import subprocess
import sys
import time

import pytest

from runtime.limits import preexec, run_limited

PY = sys.executable
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
MiB = 1024 * 1024


def gone(pid, timeout=15.0):
    """True once pid has died (SIGKILL is delivered, not awaited, so poll a little)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def run(argv, tmp_path, lines=None, **kw):
    out = [] if lines is None else lines
    kw.setdefault("timeout", 20)
    kw.setdefault("memory_bytes", None)
    status = run_limited(argv, cwd=tmp_path, env=ENV, on_line=out.append, **kw)
    return status, out


def test_returns_status_and_merged_output(tmp_path):
    status, lines = run(["/bin/sh", "-c", "echo out; echo err >&2; printf partial; exit 7"],
                        tmp_path)
    assert status == 7
    assert lines == ["out", "err", "partial"]


def test_lines_are_streamed_live(tmp_path):
    # The command only goes on once the callback saw its first line.
    go = tmp_path / "go"
    code = ("import os, time\nprint('first', flush=True)\n"
            "while not os.path.exists('go'): time.sleep(0.01)\nprint('second')")
    seen = []

    def on_line(line):
        seen.append(line)
        go.touch()
    status = run_limited([PY, "-c", code], cwd=tmp_path, env=ENV, timeout=20,
                         memory_bytes=None, on_line=on_line)
    assert (status, seen) == (0, ["first", "second"])


def test_timeout_kills_the_whole_group(tmp_path):
    lines = []
    with pytest.raises(TimeoutError, match="sh did not finish in time"):
        run(["/bin/sh", "-c", "sleep 60 & echo bg=$!; sleep 60"], tmp_path, lines, timeout=0.5)
    assert gone(int(lines[0][3:]))


def test_timeout_when_output_is_closed_but_it_runs_on(tmp_path):
    lines = []
    with pytest.raises(TimeoutError):
        run(["/bin/sh", "-c", "echo pid=$$; exec >/dev/null 2>&1; sleep 60"], tmp_path, lines,
            timeout=0.5)
    assert gone(int(lines[0][4:]))


def test_background_leftovers_are_killed_and_do_not_hold_us(tmp_path):
    # Were the pipe held by the leftover, this would end in TimeoutError.
    status, lines = run(["/bin/sh", "-c", "sleep 60 & echo bg=$!"], tmp_path, timeout=30)
    assert status == 0
    assert gone(int(lines[0][3:]))


def test_memory_limit(tmp_path):
    code = "b = bytearray(1024 * 1024 * 1024)\nprint('allocated')"
    status, lines = run([PY, "-c", code], tmp_path, memory_bytes=256 * MiB)
    assert status != 0
    assert "MemoryError" in lines
    assert "allocated" not in lines
    status, lines = run([PY, "-c", "b = bytearray(10 * 1024 * 1024); print('ok')"], tmp_path,
                        memory_bytes=256 * MiB)
    assert (status, lines) == (0, ["ok"])


@pytest.mark.skipif(not shutil.which("node"), reason="needs node")
def test_memory_limit_lets_node_reserve_address_space(tmp_path):
    # V8 reserves far more address space than it uses; only use is capped.
    code = "new WebAssembly.Memory({initial: 1}); console.log('ok')"
    status, lines = run([shutil.which("node"), "-e", code], tmp_path, memory_bytes=512 * MiB)
    assert (status, lines) == (0, ["ok"])
    grab = "const a = []; for (;;) a.push(Buffer.alloc(64 * 1024 * 1024, 1))"
    status, _ = run([shutil.which("node"), "-e", grab], tmp_path, memory_bytes=512 * MiB)
    assert status != 0


def test_cpu_limit(tmp_path):
    status, _ = run([PY, "-c", "while True: pass"], tmp_path, cpu_seconds=1)
    assert status in (-24, -9)  # SIGXCPU at the soft limit, SIGKILL at the hard one


def test_nofile_limit(tmp_path):
    code = "fs = [open('/dev/null') for _ in range(100)]"
    status, lines = run([PY, "-c", code], tmp_path, nofile=20)
    assert status == 1
    assert any("Too many open files" in line for line in lines)


def test_callback_errors_kill_the_command(tmp_path):
    def on_line(line):
        raise RuntimeError(f"stop at {line}")
    with pytest.raises(RuntimeError, match="stop at pid="):
        run_limited(["/bin/sh", "-c", "echo pid=$$; sleep 60"], cwd=tmp_path, env=ENV,
                    timeout=20, memory_bytes=None, on_line=on_line)


def test_a_check_that_raises_stops_a_silent_command_and_its_group(tmp_path):
    # No output at all: the check still runs while the command does.
    marker = tmp_path / "started"
    calls = []

    def check():
        calls.append(1)
        if marker.exists():
            raise RuntimeError("too big")
    script = f"sleep 60 & echo $! > {marker}.pid; touch {marker}; sleep 60"
    with pytest.raises(RuntimeError, match="too big"):
        run_limited(["/bin/sh", "-c", script], cwd=tmp_path, env=ENV, timeout=50,
                    memory_bytes=None, on_line=print, check=check)
    assert gone(int((tmp_path / "started.pid").read_text()))
    assert len(calls) >= 2


def test_missing_program_or_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        run([str(tmp_path / "nope")], tmp_path)
    with pytest.raises(FileNotFoundError):
        run_limited(["/bin/true"], cwd=tmp_path / "nodir", env=ENV, timeout=5,
                    memory_bytes=None, on_line=print)


def test_preexec_sets_limits_and_session():
    code = ("import os, resource as r\n"
            "print(*[r.getrlimit(x)[0] for x in (r.RLIMIT_DATA, r.RLIMIT_CPU, r.RLIMIT_NOFILE)],"
            " os.getsid(0) == os.getpid())")

    def limits(*args):
        out = subprocess.run([PY, "-c", code], preexec_fn=preexec(*args), capture_output=True,
                             text=True, timeout=20, check=True)
        return out.stdout.split()
    assert limits(512 * MiB, 30, 64) == [str(512 * MiB), "30", "64", "True"]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    unlimited = str(resource.RLIM_INFINITY)
    assert limits(None, None, 10 ** 9) == [unlimited, unlimited, str(min(10 ** 9, hard)), "True"]
