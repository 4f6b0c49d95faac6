"""Fixtures for the buildpacks tests: trees on disk, build contexts, running services.

The dependency cache is one per test session, so pip and npm work done by
one test is reused by the next, as it is on a real server.
"""
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from buildpacks.base import BuildContext, base_env
from buildpacks.spec import ServiceSpec
from runtime.executor import HOST


class Lines:
    """A ctx.log that remembers each line and when it arrived."""

    def __init__(self):
        self.lines = []
        self.times = []
        self.lock = threading.Lock()

    def __call__(self, line):
        assert "\n" not in line
        with self.lock:
            self.lines.append(line)
            self.times.append(time.monotonic())

    @property
    def text(self):
        return "\n".join(self.lines)


def write_tree(root: Path, files: dict) -> Path:
    """files: relative path -> text (str), bytes, or (text, mode)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = None
        if isinstance(content, tuple):
            content, mode = content
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        if mode is not None:
            path.chmod(mode)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bp-cache")


@pytest.fixture(scope="session")
def make_ctx(tmp_path_factory, cache_dir):
    """make_ctx(files, type=..., **spec fields) -> (ctx, lines), src laid out on disk."""
    def make(files=None, *, name="www", type="python", timeout=120, env=None, **fields):
        release = tmp_path_factory.mktemp("release")
        spec = ServiceSpec(name=name, type=type, **fields)
        src = write_tree(release / "src" / spec.approot, files or {})
        lines = Lines()
        ctx = BuildContext(app="testapp", service=spec, src=src, release_dir=release,
                           cache_dir=cache_dir, env=env or {}, log=lines, executor=HOST,
                           timeout=timeout)
        return ctx, lines
    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(argv, *, cwd, env, wait_seconds=60.0):
    """Run a declared process with {port} filled in; yield its base URL."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    full_env = {**base_env(), **env, "PORT": str(port)}
    proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode}: {proc.stdout.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("service never listened")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


@pytest.fixture(scope="session")
def run_service():
    """run_service(ctx, result, name='web') -> context manager yielding the URL."""
    def start(ctx, result, name="web"):
        return running(result.processes[name], cwd=ctx.src,
                       env={**ctx.service.environment, **result.env})
    return start


def get(url, headers=None, method="GET"):
    """(status, headers, body) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="session")
def http():
    return get
