"""Fixtures for the SSH command tests: a command runner that quotes like a
shell would, and small deployed apps shared by a module's read-only tests."""
import itertools
import json
import shlex
import subprocess

import pytest
from platform_helpers import Result, git_repo

_counter = itertools.count()

ENV_APP = '''
import json, os

def application(environ, start_response):
    name = environ.get("PATH_INFO", "/").strip("/")
    body = (os.environ.get(name, "<unset>") if name else "env app").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


class Commands:
    """`ssh dotcloud@host WORDS` with each word quoted, as a person would type it."""

    def __init__(self, platform):
        self.platform = platform

    def __call__(self, user: str, *words: str, input: bytes = b"", timeout: float = 120) -> Result:
        return self.platform.ssh(user, shlex.join(words), input=input, timeout=timeout)

    def json(self, user: str, *words: str, **kw):
        r = self(user, *words, "--json", **kw)
        assert r.code == 0, r.text
        return json.loads(r.out)

    def popen(self, user: str, *words: str) -> subprocess.Popen:
        p = self.platform
        argv = p.ssh_command(user).split() + ["-p", str(p.ssh_port), "dotcloud@127.0.0.1",
                                              shlex.join(words)]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def cmd(platform):
    return Commands(platform)


def deploy_env_app(platform, tmp_path, name: str, extra: dict | None = None):
    files = {"wsgi.py": ENV_APP, "requirements.txt": ""}
    files.update(extra or {})
    repo = git_repo(tmp_path / name, files)
    r = platform.push("alice", repo, name)
    assert r.code == 0, r.text
    return repo


@pytest.fixture(scope="session")
def app(platform, tmp_path_factory):
    """An app of alice's, deployed once, for tests that leave it as they found it."""
    name = unique("shared")
    deploy_env_app(platform, tmp_path_factory.mktemp("apps"), name)
    return name
