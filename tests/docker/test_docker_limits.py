"""Issue 16 under the docker runtime: a service's limits hold its instances, its
build steps and its `run` commands, each in a container, and a container the
kernel killed for memory says `out of memory (limit 64M)` as on the host."""
import json
import shlex
import signal
import subprocess
import time

import pytest
from dockerkit import data_label
from platform_helpers import git_repo

from dotcloud import appusers
from dotcloud.settings import load

pytestmark = pytest.mark.docker
MiB = 1024 * 1024

SERVER = '''
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/bomb":
            hog = b"x" * (400 * 1024 * 1024)    # written, so really used
        body = b"up"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''
HOG = "python3 -c 'hog = b\"x\" * (400 * 1024 * 1024)'"


def custom_app(limits: str, buildscript: str | None = None) -> dict:
    lines = ["www:", "  type: custom", f"  limits: {limits}", "  processes:",
             "    web: python3 server.py"]
    if buildscript:
        lines.append(f"  buildscript: {json.dumps(buildscript)}")
    return {"dotcloud.yml": "\n".join(lines) + "\n", "server.py": SERVER}


def ssh(platform, *words, **kw):
    return platform.ssh("alice", shlex.join(words), **kw)


def status_json(platform, app):
    r = ssh(platform, "status", app, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)


def wait_until(predicate, timeout=90.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_container_killed_for_memory_says_so_in_status(dplatform, engine, tmp_path):
    repo = git_repo(tmp_path / "doom", custom_app("{memory: 64M}"))
    r = dplatform.push("alice", repo, "doom")
    assert r.code == 0, r.text
    assert dplatform.get("doom.localhost")[0] == 200
    try:
        dplatform.get("doom.localhost", "/bomb", timeout=20)
    except OSError:
        pass   # the container died mid-request: that is the point
    inst = wait_until(lambda: next((i for i in status_json(dplatform, "doom")["instances"]
                                    if i["last_exit_reason"] and i["last_exit"] is not None),
                                   None), what="the OOM exit")
    assert inst["last_exit_reason"] == "out of memory (limit 64M)"
    assert inst["last_exit"] in (-signal.SIGKILL, 137) and inst["oom_kills"] >= 1
    assert inst["processes"]["web"]["last_exit_reason"] == "out of memory (limit 64M)"
    assert inst["limits"]["memory_bytes"] == 64 * MiB
    text = ssh(dplatform, "status", "doom").out
    assert "out of memory (limit 64M)" in text and "SIGKILL" not in text
    wait_until(lambda: dplatform.get("doom.localhost")[0] == 200, what="the restart")
