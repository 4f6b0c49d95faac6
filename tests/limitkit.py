"""What the limits tests of every runtime share: a memory-hog app, its build
file, and waiting on the platform (tests/e2e/test_limits.py,
tests/docker/test_docker_limits.py).

The app is a plain HTTP server (no dependencies, so nothing is installed):
`/bomb` writes 400M in the request (the instance is OOM-killed), `/go`
starts membomb.py and forkbomb.py when the test put them in the tree, and
BOMB_AT_BOOT in its environment writes 400M before it listens.
"""
import json
import os
import shlex
import time

SERVER_TEMPLATE = '''
import os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/bomb":
            hog = b"x" * (400 * 1024 * 1024)    # written, so really used
        if self.path == "/go":                  # the bombs go off once the deploy is done
            import subprocess
            subprocess.Popen([sys.executable, "membomb.py"])
            subprocess.Popen([sys.executable, "forkbomb.py"])
        body = b"up"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

if os.environ.get("BOMB_AT_BOOT"):
    hog = b"x" * (400 * 1024 * 1024)
HTTPServer((BIND, int(os.environ["PORT"])), Handler).serve_forever()
'''


def server(bind: str = "127.0.0.1") -> str:
    """server.py, listening on bind (a swarm task's must take the node's traffic: 0.0.0.0)."""
    return SERVER_TEMPLATE.replace("BIND", repr(bind))


SERVER = server()
# A shell command past any limit under a few hundred megabytes.
HOG = "python3 -c 'hog = b\"x\" * (400 * 1024 * 1024)'"


def custom_app(limits: str, processes: dict | None = None, files: dict | None = None,
               buildscript: str | None = None, env: dict | None = None,
               release: str | None = None, prebuild: str | None = None) -> dict:
    """The files of a custom service `www` with these limits (a YAML flow mapping)
    serving server.py (or running processes)."""
    lines = ["www:", "  type: custom", f"  limits: {limits}", "  processes:"]
    lines += [f"    {name}: {command}"
              for name, command in (processes or {"web": "python3 server.py"}).items()]
    for key, value in (("buildscript", buildscript), ("prebuild", prebuild),
                       ("environment", env), ("release", release)):
        if value:
            lines.append(f"  {key}: {json.dumps(value)}")
    return {"dotcloud.yml": "\n".join(lines) + "\n", "server.py": SERVER, **(files or {})}


def ssh(platform, *words, **kw):
    return platform.ssh("alice", shlex.join(words), **kw)


def status_json(platform, app):
    r = ssh(platform, "status", app, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)


def wait_until(predicate, timeout=60.0, what="condition", interval=0.1):
    """predicate()'s first true value; fails after timeout seconds (a bound, not a timing)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def unique_sleep() -> str:
    """An argument for `sleep` no other process has: pids_with finds it."""
    return f"3000.{time.time_ns() % 10**9:09d}"


def pids_with(marker: str) -> list[int]:
    """The pids of the `sleep MARKER` processes on this host."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read() == f"sleep\0{marker}\0".encode():
                        found.append(int(pid))
            except OSError:
                pass
    return found
