"""The OOM watcher of swarm tasks (runtime/oom_watch.sh) and the launcher's
reading of its lines, without a swarm: the script runs here under /bin/sh, its
cgroup file faked by a copy of the script reading another path."""
import os
import signal
import subprocess
import sys
import time

from runtime import swarm_oom

MiB = 1024 * 1024


def test_marker_lines_are_parsed_and_counted_once_per_task():
    assert swarm_oom.parse(b"dotcloud-oom-kill abc 2\n") == ("abc", 2, False)
    assert swarm_oom.parse("dotcloud-oom-kill abc 3 exit\n") == ("abc", 3, True)
    for line in (b"hello\n", b"dotcloud-oom-kill abc\n", b" dotcloud-oom-kill abc 1\n",
                 b"dotcloud-oom-kill abc 1 later\n", b"dotcloud-oom-kill abc x\n"):
        assert swarm_oom.parse(line) is None, line
    kills = swarm_oom.Kills()
    assert kills.see(b"app output\n") is None
    assert kills.see(b"dotcloud-oom-kill t1 1\n") == 1
    assert kills.see(b"dotcloud-oom-kill t1 1\n") == 0      # the same line read again
    assert kills.see(b"dotcloud-oom-kill t1 3\n") == 2
    assert kills.see(b"dotcloud-oom-kill t2 1\n") == 1      # the next task counts from 0
    assert kills.total == 4
    # A worker killed an hour ago, then a crash for something else: not memory.
    assert not kills.killed_at_exit({"t1"}, 1)
    assert kills.killed_at_exit({"t1"}, 137)
    assert not kills.killed_at_exit({"t1"}, 0)
    tasks = kills.of_lines([b"bye\n", b"dotcloud-oom-kill t3 1 exit\n"])
    assert tasks == {"t3"} and kills.killed_at_exit(tasks, 1) and kills.total == 5


def test_exit_reasons():
    assert swarm_oom.exit_reason(137, 64 * MiB, True) == "out of memory (limit 64M)"
    assert swarm_oom.exit_reason(137, 64 * MiB, False) is None      # killed by another
    assert swarm_oom.exit_reason(137, None, True) is None           # no limit
    assert swarm_oom.exit_reason(0, 64 * MiB, True) is None
    assert swarm_oom.exit_reason(137, 64 * MiB, None) == (
        "killed by SIGKILL, perhaps out of memory (limit 64M): its log could not be read")
    assert swarm_oom.exit_reason(1, 64 * MiB, None) is None
    assert swarm_oom.command(["python3", "app.py"]) == [
        "/bin/sh", swarm_oom.TARGET, "python3", "app.py"]


def watcher(tmp_path, counter):
    """The script, reading `counter` (a fake memory.events) for its cgroup's."""
    script = tmp_path / "watch.sh"
    script.write_text(swarm_oom.SCRIPT.read_text().replace(
        "/sys/fs/cgroup/memory.events", str(counter)))
    return script


def test_the_watcher_tells_kills_while_its_child_lives_and_at_its_end(tmp_path):
    counter = tmp_path / "memory.events"
    counter.write_text("oom 0\noom_kill 0\n")
    flag, started = tmp_path / "go", tmp_path / "started"
    child = (f"touch {started}; while [ ! -e {flag} ]; do sleep 0.1; done; sleep 0.3; "
             "exit 7")
    proc = subprocess.Popen(["/bin/sh", str(watcher(tmp_path, counter)), "sh", "-c", child],
                            stderr=subprocess.PIPE)
    while not started.exists():       # the watcher has read its count
        time.sleep(0.05)
    counter.write_text("oom 1\noom_kill 1\n")         # a worker killed
    first = proc.stderr.readline()                    # within its 2 s poll
    counter.write_text("oom 2\noom_kill 2\n")         # killed as the command ends
    flag.touch()
    rest = proc.stderr.read()
    assert proc.wait(10) == 7
    task, count, at_exit = swarm_oom.parse(first)
    assert count == 1 and not at_exit
    assert swarm_oom.parse(rest.splitlines()[-1]) == (task, 2, True)


def test_the_watcher_forwards_signals_and_adds_no_delay(tmp_path):
    counter = tmp_path / "memory.events"
    counter.write_text("oom_kill 0\n")
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen(["/bin/sh", str(watcher(tmp_path, counter)), sys.executable, "-c",
                             code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # SIGINT is not ignored in the child, as it would be for a background job.
    assert proc.stdout.readline() == b"True\n"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 3
    print(f"stopped {time.monotonic() - t0:.3f}s after SIGTERM")
    assert b"dotcloud-oom-kill" not in proc.stderr.read()      # no kill, no line


def test_a_command_the_image_lacks_says_so(tmp_path):
    r = subprocess.run(["/bin/sh", str(swarm_oom.SCRIPT), "no-such-command-here"],
                       capture_output=True, env={"PATH": os.environ["PATH"]})
    assert r.returncode == 127
    assert r.stderr == b"[swarm] no-such-command-here: command not found in the image\n"
