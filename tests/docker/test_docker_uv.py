"""A uv.lock app under the docker runtime asks for a Python the host does not
have (`.python-version` names the image's version; the host's /usr/bin has
another): `uv export` runs in the build container with the image's
interpreter, so the push builds, and a stale lock is still refused there.
The lock is made here by `uv lock`, against this machine's configured indexes.
"""
import subprocess
import sys
from pathlib import Path

import pytest
from platform_helpers import git_repo

from buildpacks.base import base_env
from buildpacks.interpreters import image_version
from buildpacks.uvtool import uv_binary, uv_env
from dotcloud.settings import Settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WSGI = '''
import six
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("six " + six.__version__).encode()]
'''


def pyproject(six: str) -> str:
    return ("[project]\nname = \"uvdocker\"\nversion = \"0.1.0\"\n"
            f"requires-python = \">=3.11\"\ndependencies = [\"six=={six}\"]\n")


def uv_lock(src: Path, tmp: Path) -> None:
    env = base_env()
    env.update(uv_env(env, tmp / "uv-cache"))
    # The platform's own interpreter makes the lock: the one .python-version
    # names may be nowhere on this host, which is the point.
    run = subprocess.run([uv_binary(), "lock", "-q", "--python", sys.executable], cwd=src,
                         env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=300)
    assert run.returncode == 0, run.stdout


def test_a_uv_lock_asking_for_the_images_python_builds_in_the_image(dplatform, tmp_path):
    wanted = ".".join(map(str, image_version(Settings.docker_python_image)[:2]))
    repo = tmp_path / "uvdocker"
    git_repo(repo, {"pyproject.toml": pyproject("1.15.0"), "wsgi.py": WSGI,
                    ".python-version": wanted + "\n"})
    uv_lock(repo, tmp_path)
    git_repo(repo, {}, "lock")
    r = dplatform.push("alice", repo, "uvdocker")
    assert r.code == 0, r.err
    assert "[www] Exporting uv.lock" in r.err and "No interpreter found" not in r.err
    assert dplatform.get("uvdocker.localhost")[:2] == (200, "six 1.15.0")

    # uv still checks the lock against pyproject.toml in the container.
    git_repo(repo, {"pyproject.toml": pyproject("1.16.0")}, "stale")
    r = dplatform.push("alice", repo, "uvdocker")
    assert r.code != 0
    assert "uv.lock is out of date with pyproject.toml; run 'uv lock' and commit it" in r.err
    assert dplatform.get("uvdocker.localhost")[:2] == (200, "six 1.15.0")
