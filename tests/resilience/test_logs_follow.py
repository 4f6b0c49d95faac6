"""Issue 5: instance output and platform events reach the per-instance log
with timestamps, and `logs -f` streams them live, across a crash and restart
of the instance's process."""
import queue
import re
import subprocess
import threading
import time

from platform_helpers import git_repo
from resilience_helpers import instance_log, instances, kill9, process_pid, wait_until

ECHO = '''
import sys
def application(environ, start_response):
    print("app saw " + environ["PATH_INFO"], flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"echo"]
'''
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z web: ")


class Stream:
    """The lines of a running command, readable with a timeout."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))

    def expect(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {timeout}s; "
                                     f"saw {self.seen[-10:]}") from None
            self.seen.append(line)
            if text in line:
                return line

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_logs_follow_across_a_crash(own_platform, tmp_path):
    p = own_platform
    r = p.push("alice", git_repo(tmp_path / "echo", {"wsgi.py": ECHO, "requirements.txt": ""}),
               "echo")
    assert r.code == 0, r.text
    [inst] = instances(p.data, "echo")
    follow = Stream(p.ssh_command("alice").split() + ["-p", str(p.ssh_port), "dotcloud@127.0.0.1",
                                                     "logs", "echo", "-f", "-n", "0"])
    try:
        # The command is running before the app prints what we look for.
        wait_until(lambda: p.get("echo.localhost", "/before-the-crash")
                   and follow.lines.qsize() > 0, 20, "the follower to stream", poll=0.3)
        follow.expect("app saw /before-the-crash")
        master = process_pid(p.data, inst.id)
        kill9(master)
        assert "killed by SIGKILL" in follow.expect("[dotcloud] killed by SIGKILL")
        follow.expect("[dotcloud] started pid=")
        wait_until(lambda: p.get("echo.localhost", "/after-the-restart")[0] == 200, 20,
                   "the app to answer again", poll=0.1)
        line = follow.expect("app saw /after-the-restart")
        assert line.startswith("[www.0] "), line
    finally:
        follow.close()
    log = instance_log(p.data, "echo", "www.0").splitlines()
    assert all(STAMP.match(line) for line in log), [l for l in log if not STAMP.match(l)][:3]
    events = [line.split(" web: ", 1)[1] for line in log if "[dotcloud]" in line]
    assert events[0].startswith("[dotcloud] started pid=")
    assert any(e.startswith("[dotcloud] killed by SIGKILL") for e in events)
    assert events[-1].startswith("[dotcloud] started pid=")
