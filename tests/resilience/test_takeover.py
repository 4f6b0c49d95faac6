"""take_over() never signals a process that is not a daemon of this data directory."""
import json
import subprocess
import sys
import time

import pytest

from dotcloud.errors import UsageError
from dotcloud.takeover import take_over


def started(proc, word: str):
    """Wait until proc runs its own program: right after fork, /proc shows ours."""
    deadline = time.monotonic() + 10
    while word.encode() not in open(f"/proc/{proc.pid}/cmdline", "rb").read().split(b"\0"):
        assert time.monotonic() < deadline, "the process never started"
        time.sleep(0.01)
    return proc


def write_up(run, pid, daemons):
    run.mkdir(parents=True, exist_ok=True)
    (run / "up.json").write_text(json.dumps({"pid": pid, "daemons": daemons}))


def test_no_file_or_a_broken_one_changes_nothing(tmp_path):
    take_over(tmp_path, 1)
    (tmp_path / "run").mkdir()
    for text in ("", "{", "[]", '{"pid": "x"}', '{"pid": 1, "daemons": 3}'):
        (tmp_path / "run" / "up.json").write_text(text)
        take_over(tmp_path, 1)


def test_strangers_with_recorded_pids_are_left_alone(tmp_path):
    # a pid from up.json reused by an unrelated process, and a daemon-like
    # process of another data directory
    stranger = started(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                         "up", str(tmp_path)]), "up")
    other = started(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                      "dotcloud", "--data", str(tmp_path / "elsewhere"),
                                      "router"]), "router")
    try:
        write_up(tmp_path / "run", 999_999_999, {"router": other.pid, "ssh": stranger.pid})
        take_over(tmp_path, 0.2)
        time.sleep(0.2)
        assert stranger.poll() is None and other.poll() is None
    finally:
        stranger.kill()
        other.kill()


def test_a_running_up_is_refused(tmp_path):
    up = started(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                   "dotcloud-server", "--data", "var", "up"]), "up")
    try:
        write_up(tmp_path / "run", up.pid, {})
        with pytest.raises(UsageError, match=f"another up is running for .* \\(pid {up.pid}\\)"):
            take_over(tmp_path, 1)
    finally:
        up.kill()


def test_a_dead_ups_daemons_are_stopped(tmp_path):
    # SIGTERM for the router, which stops on it; SIGKILL at once for the
    # runtime, which here would ignore a SIGTERM (take_over would then wait
    # out its whole grace period)
    ready = tmp_path / "ignoring"
    router = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               "dotcloud.cli", "--data", str(tmp_path), "router"],
                              start_new_session=True)
    runtime = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)",
         str(ready), "dotcloud.cli", "--data", str(tmp_path), "runtime"],
        start_new_session=True)
    try:
        started(router, "router")
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline, "the runtime stand-in never started"
            time.sleep(0.01)
        write_up(tmp_path / "run", 999_999_999, {"router": router.pid, "runtime": runtime.pid})
        begun = time.monotonic()
        take_over(tmp_path, 30)
        assert time.monotonic() - begun < 10
        assert router.wait(5) == -15 and runtime.wait(5) == -9
    finally:
        router.kill()
        runtime.kill()
