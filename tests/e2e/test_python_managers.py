"""Python package managers and Django's collectstatic through real pushes.

Apps without a dotcloud.yml, as Heroku users push them: a uv project whose
lock (made here by `uv lock`, against this machine's configured indexes)
pins an older six; a Pipfile pushed without its lock, refused with one
line while the running release keeps serving; a Django tree whose
collectstatic output the app serves.
"""
import subprocess
from pathlib import Path

import pytest
from platform_helpers import git_repo

from buildpacks.base import base_env
from buildpacks.uvtool import uv_binary, uv_env

pytestmark = pytest.mark.slow

SIX_WSGI = '''
import six
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("six " + six.__version__).encode()]
'''
PYPROJECT = """\
[project]
name = "pushed"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["six==1.15.0"]

[dependency-groups]
dev = ["itsdangerous"]
"""


def uv_lock(src: Path, tmp: Path) -> None:
    env = base_env()
    env.update(uv_env(env, tmp / "uv-cache"))
    run = subprocess.run([uv_binary(), "lock", "-q"], cwd=src, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert run.returncode == 0, run.stdout


def test_uv_lock_app_detected_and_served_with_its_pins(platform, tmp_path):
    repo = tmp_path / "uvapp"
    git_repo(repo, {"pyproject.toml": PYPROJECT, "wsgi.py": SIX_WSGI})
    uv_lock(repo, tmp_path)
    git_repo(repo, {}, "lock")
    r = platform.push("alice", repo, "uvapp")
    assert r.code == 0, r.err
    assert "[www] Installing uv.lock with uv" in r.err
    status, body, _ = platform.get("uvapp.localhost")
    assert (status, body) == (200, "six 1.15.0")

    # A Pipfile without its lock: refused with one line; the release keeps serving.
    git_repo(repo, {"Pipfile": '[packages]\nsix = "*"\n'}, "pipfile")
    r = platform.push("alice", repo, "uvapp")
    assert r.code != 0
    assert "Pipfile: no Pipfile.lock beside it; run 'pipenv lock' and commit Pipfile.lock" \
        in r.err
    assert platform.get("uvapp.localhost")[:2] == (200, "six 1.15.0")


DJANGO_SETTINGS = """\
from pathlib import Path
BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "e2e"
INSTALLED_APPS = ["django.contrib.staticfiles"]
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "assets"]
"""
DJANGO_MANAGE = """\
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""
STATIC_WSGI = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/css")])
    return [open("staticfiles/app.css", "rb").read()]
'''


def test_django_collectstatic_runs_in_the_push(platform, tmp_path):
    repo = git_repo(tmp_path / "djapp", {
        "requirements.txt": "django>=4.2,<6\n", "manage.py": DJANGO_MANAGE,
        "site_settings/__init__.py": "", "site_settings/settings.py": DJANGO_SETTINGS,
        "assets/app.css": "body { color: teal }\n", "wsgi.py": STATIC_WSGI})
    r = platform.push("alice", repo, "djapp")
    assert r.code == 0, r.err
    assert "[www] $ python manage.py collectstatic --noinput" in r.err
    assert platform.get("djapp.localhost")[:2] == (200, "body { color: teal }\n")
