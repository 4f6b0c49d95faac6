"""Python package managers: each honours its lock exactly, refusals, uv's settings, Django.

Locks are made here at test time by the real tools (pipenv and poetry
installed into a temporary virtualenv with uv, `uv lock`), against the
indexes this machine's pip configuration names, so no registry host is
written in this file. Each lock pins six 1.15.0, older than the newest, and
puts itsdangerous in a dev group that must not be installed.
"""
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from buildpacks import build_service, plan
from buildpacks.base import base_env
from buildpacks.cache import content_key
from buildpacks.detect import detect_type
from buildpacks.pymanagers import detect, logical_lines, pins, pipfile_hashes
from buildpacks.python import PythonBuildpack
from buildpacks.uvtool import uv_binary, uv_env
from dotcloud.errors import BuildError

WSGI = """\
import six

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [six.__version__.encode()]
"""
OLD_SIX = "1.15.0"
# Unique per session, so these builds install on a machine whose cache saw them.
SALT = content_key(str(time.time()))[:8]
PYPROJECT = f"""\
[project]
name = "app-{SALT}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["six=={OLD_SIX}", "idna"]
"""


def installed(venv):
    """{canonical name: version} of the distributions in a virtualenv."""
    found = {}
    for info in Path(venv).glob("lib/python*/site-packages/*.dist-info"):
        name, version = info.name[:-len(".dist-info")].rsplit("-", 1)
        found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def tool_env(tmp):
    env = base_env()
    env.update(uv_env(env, Path(tmp) / "uv-cache"))
    env.update(HOME=str(tmp), PIPENV_YES="1", PIPENV_NOSPIN="1", PIPENV_IGNORE_VIRTUALENVS="1",
               WORKON_HOME=str(Path(tmp) / "venvs"), POETRY_CACHE_DIR=str(Path(tmp) / "poetry"))
    return env


@pytest.fixture(scope="session")
def tools(tmp_path_factory):
    """A virtualenv with pipenv and poetry, to make locks as their users do."""
    root = tmp_path_factory.mktemp("lock-tools")
    env = tool_env(root)
    subprocess.run([uv_binary(), "venv", "-q", "--python", sys.executable, str(root / "v")],
                   env=env, check=True)
    subprocess.run([uv_binary(), "pip", "install", "-q", "--python", str(root / "v/bin/python"),
                    "pipenv", "poetry"], env=env, check=True)
    return root


def lock(tools, src, *argv):
    run = subprocess.run(argv, cwd=src, env=tool_env(tools), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300)
    assert run.returncode == 0, run.stdout


def built(make_ctx, files, make_lock=None, **fields):
    ctx, lines = make_ctx({"wsgi.py": WSGI, **files}, **fields)
    if make_lock:
        make_lock(ctx.src)
    result = build_service(ctx)
    return ctx, lines, result, installed(result.env["VIRTUAL_ENV"])


def rebuilt(make_ctx, ctx, result):
    """The same tree, lock included, again: the virtualenv is reused, nothing runs."""
    files = {str(p.relative_to(ctx.src)): p.read_text() for p in ctx.src.rglob("*")
             if p.is_file()}
    again, lines = make_ctx(files)
    assert plan(again) is True
    second = build_service(again)
    assert second.incremental is True and second.env == result.env
    assert not [line for line in lines.lines if line.startswith(("Installing", "Exporting"))]


def check_locked(versions, result):
    assert versions["six"] == OLD_SIX
    assert "itsdangerous" not in versions       # dev dependencies stay out
    assert "gunicorn" in versions and result.processes["web"][1:3] == ("-m", "gunicorn")


# --- each manager installs what its lock pins --------------------------------

@pytest.mark.slow
def test_requirements_txt(make_ctx):
    ctx, lines, result, versions = built(
        make_ctx, {"requirements.txt": f"# {SALT}\nsix=={OLD_SIX}\n"})
    assert versions["six"] == OLD_SIX
    assert "Installing requirements.txt with uv" in lines.lines


@pytest.mark.slow
def test_pipfile_lock(make_ctx, tools):
    pipfile = f'[packages]\nsix = "=={OLD_SIX}"\nidna = "*"\n\n[dev-packages]\nitsdangerous = "*"\n'
    ctx, lines, result, versions = built(
        make_ctx, {"Pipfile": pipfile + f"# {SALT}\n"},
        lambda src: lock(tools, src, str(tools / "v/bin/pipenv"), "lock"))
    check_locked(versions, result)
    assert "Installing Pipfile.lock with uv" in lines.lines
    # the lock pinned idna too; uv installed that very version, hashes checked
    locked = json.loads((ctx.src / "Pipfile.lock").read_text())["default"]
    assert versions["idna"] == locked["idna"]["version"].lstrip("=")
    rebuilt(make_ctx, ctx, result)


@pytest.mark.slow
def test_stale_pipfile_lock_is_refused(make_ctx, tools):
    ctx, _ = make_ctx({"wsgi.py": WSGI, "Pipfile": f'[packages]\nsix = "=={OLD_SIX}"\n'})
    lock(tools, ctx.src, str(tools / "v/bin/pipenv"), "lock")
    assert detect(ctx.src).name == "pipenv"
    (ctx.src / "Pipfile").write_text(f'[packages]\nsix = "=={OLD_SIX}"\nidna = "*"\n')
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == ("Pipfile.lock is out of date with Pipfile (its _meta hash "
                               "differs); run 'pipenv lock' and commit it")


@pytest.mark.slow
def test_poetry_lock(make_ctx, tools):
    project = PYPROJECT + ('\n[tool.poetry]\npackage-mode = false\n\n'
                           '[tool.poetry.group.dev.dependencies]\nitsdangerous = "*"\n')
    ctx, lines, result, versions = built(
        make_ctx, {"pyproject.toml": project},
        lambda src: lock(tools, src, str(tools / "v/bin/poetry"), "lock", "-n"))
    check_locked(versions, result)
    assert "Installing poetry.lock with uv" in lines.lines
    assert "itsdangerous" in (ctx.src / "poetry.lock").read_text()
    rebuilt(make_ctx, ctx, result)


@pytest.mark.slow
def test_uv_lock(make_ctx, tools):
    project = PYPROJECT + '\n[dependency-groups]\ndev = ["itsdangerous"]\n'
    ctx, lines, result, versions = built(
        make_ctx, {"pyproject.toml": project},
        lambda src: lock(tools, src, uv_binary(), "lock", "-q"))
    check_locked(versions, result)
    assert "Installing uv.lock with uv" in lines.lines
    assert not (ctx.src / ".venv").exists()     # uv made nothing in the tree

    rebuilt(make_ctx, ctx, result)


@pytest.mark.slow
def test_stale_uv_lock_is_refused_by_uv(make_ctx, tools):
    ctx, lines = make_ctx({"wsgi.py": WSGI, "pyproject.toml": PYPROJECT})
    lock(tools, ctx.src, uv_binary(), "lock", "-q")
    (ctx.src / "pyproject.toml").write_text(PYPROJECT.replace('"idna"', '"idna", "certifi"'))
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == ("uv.lock is out of date with pyproject.toml; run 'uv lock' "
                               "and commit it")
    assert any("needs to be updated" in line for line in lines.lines)


@pytest.mark.slow
def test_pyproject_alone(make_ctx):
    ctx, lines, result, versions = built(make_ctx, {"pyproject.toml": PYPROJECT})
    assert versions["six"] == OLD_SIX and "idna" in versions
    assert "Installing pyproject.toml with uv" in lines.lines
    assert f"app-{SALT}" not in versions    # the project itself runs from approot


# --- refusals, each with its one line ------------------------------------------------

REFUSALS = [
    ({"Pipfile": '[packages]\nsix = "*"\n'},
     "Pipfile: no Pipfile.lock beside it; run 'pipenv lock' and commit Pipfile.lock"),
    ({"Pipfile": '[packages]\nsix = "*"\n',
      "Pipfile.lock": json.dumps({"_meta": {"hash": {"sha256": "0" * 64}, "sources": []},
                                  "default": {"six": {"version": "==1.15.0"}}})},
     "Pipfile.lock is out of date with Pipfile (its _meta hash differs); run 'pipenv lock' "
     "and commit it"),
    ({"Pipfile": '[packages]\nsix = "*"\n', "Pipfile.lock": '{"_meta": '},
     "Pipfile.lock: not valid JSON: Expecting value: line 1 column 11 (char 10)"),
    ({"Pipfile": '[packages]\nsix = "*"\n', "Pipfile.lock": '[]'},
     "Pipfile.lock: not a Pipfile.lock ('_meta' and 'default' tables expected)"),
    ({"Pipfile": '[packages]\nsix = "*"\n',
      "Pipfile.lock": '{"_meta": {}, "default": {"six": "==1.15.0"}}'},
     "Pipfile.lock: not a Pipfile.lock ('_meta' and 'default' tables expected)"),
    ({"Pipfile.lock": '{"_meta": {}, "default": {}}'}, "Pipfile.lock: no Pipfile beside it"),
    ({"Pipfile": "[packages\n", "Pipfile.lock": '{"_meta": {}, "default": {}}'},
     "Pipfile: not valid TOML: ..."),
    ({"requirements.txt": "six\n", "poetry.lock": "", "pyproject.toml": PYPROJECT},
     "requirements.txt and poetry.lock: several package managers in one service; "
     "keep the files of only one"),
    ({"Pipfile": "", "Pipfile.lock": "{}", "uv.lock": "", "requirements.txt": ""},
     "Pipfile.lock, requirements.txt and uv.lock: several package managers in one service; "
     "keep the files of only one"),
    ({"poetry.lock": "[[package]\n", "pyproject.toml": PYPROJECT},
     "poetry.lock: not valid TOML: ..."),
    ({"poetry.lock": 'package = "six"\n', "pyproject.toml": PYPROJECT},
     "poetry.lock: not a poetry lock ('[[package]]' entries with a name and a version "
     "expected)"),
    ({"poetry.lock": '[[package]]\nname = "six"\nversion = "1.15.0"\n',
      "pyproject.toml": PYPROJECT},
     "poetry.lock is out of date with pyproject.toml: 'idna' is not in it; run 'poetry lock' "
     "and commit it"),
    ({"poetry.lock": ""}, "poetry.lock: no pyproject.toml beside it"),
    ({"uv.lock": "version = 1\n"}, "uv.lock: no pyproject.toml beside it"),
    ({"uv.lock": "package = 1\n", "pyproject.toml": PYPROJECT},
     "uv.lock: not a uv lock ('[[package]]' entries expected)"),
    ({"uv.lock": "version = = 1\n", "pyproject.toml": PYPROJECT},
     "uv.lock: not valid TOML: ..."),
    ({"pyproject.toml": "[project]\nname = 'a'\ndynamic = ['dependencies']\n"},
     "pyproject.toml: its dependencies are dynamic; list them in [project] dependencies, "
     "or add a requirements.txt or a lock file"),
    ({"pyproject.toml": "[project]\ndependencies = 'six'\n"},
     "pyproject.toml: [project] dependencies must be a list of strings"),
]


@pytest.mark.parametrize("files, message", REFUSALS)
def test_refusals_before_any_hook_or_install(make_ctx, files, message):
    ctx, lines = make_ctx({"wsgi.py": WSGI, **files}, prebuild="touch prebuild-ran")
    assert plan(ctx) is False
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    if message.endswith("..."):     # then the parser's own words, which vary by version
        assert str(info.value).startswith(message[:-3]) and "line 1" in str(info.value)
    else:
        assert str(info.value) == message
    assert lines.lines == [] and not (ctx.src / "prebuild-ran").exists()


def test_pipfile_hash_is_pipenvs():
    # What pipenv wrote for this Pipfile (with an explicit source), by its algorithm.
    pipfile = {"source": [{"name": "s", "url": "file:///x", "verify_ssl": True}],
               "packages": {"Six": "==1.15.0"}, "dev-packages": {}}
    canonical = dict(pipfile, packages={"six": "==1.15.0"})
    data = {"_meta": {"sources": pipfile["source"], "requires": {}},
            "default": {"six": "==1.15.0"}, "develop": {}}
    expected = __import__("hashlib").sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert expected in pipfile_hashes(pipfile, [])
    assert expected in pipfile_hashes(canonical, [])


RICH_PIPFILE = """\
[[source]]
url = "file:///srv/index/simple"
verify_ssl = false
name = "local"

[packages]
Django = {version = ">=4", extras = ["argon2"]}
six_x = "*"

[dev-packages]
pytest = "*"

[docs]
Sphinx = "*"

[requires]
python_version = "3.12"

[scripts]
x = "echo"
"""


@pytest.mark.slow
def test_pipfile_hash_is_the_one_pipenv_computes(tools, tmp_path):
    (tmp_path / "Pipfile").write_text(RICH_PIPFILE)
    run = subprocess.run(
        [str(tools / "v/bin/python"), "-c",
         "from pipenv.project import Project; from pipenv.vendor import plette\n"
         "print(Project().pipfile.calculate_hash())\n"
         "print(plette.Pipfile.load(open('Pipfile')).get_hash().value)"],
        cwd=tmp_path, env=tool_env(tmp_path), capture_output=True, text=True, check=True)
    ours = pipfile_hashes(tomllib.loads(RICH_PIPFILE), [])
    assert set(run.stdout.split()) == ours     # newer pipenv's, and plette's


def test_lock_lines_become_constraints_without_hashes_or_paths():
    text = ("six==1.15.0 ; python_version >= '3' \\\n    --hash=sha256:aa \\\n"
            "    --hash=sha256:bb\n-e ./lib\nidna==3.4 --hash=sha256:cc  # pinned\n")
    assert logical_lines(text)[0].startswith("six==1.15.0 ; python_version >= '3'")
    assert pins(text) == "six==1.15.0 ; python_version >= '3'\nidna==3.4\n"


def test_local_paths_in_locks_build_a_virtualenv_per_release(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "uv.lock").write_text(
        '[[package]]\nname = "app"\nversion = "0"\nsource = { virtual = "." }\n'
        '[[package]]\nname = "lib"\nversion = "1"\nsource = { editable = "lib" }\n')
    assert detect(tmp_path).local is True
    (tmp_path / "uv.lock").write_text(
        '[[package]]\nname = "app"\nversion = "0"\nsource = { virtual = "." }\n')
    assert detect(tmp_path).local is False


# --- detection and uv's settings ----------------------------------------------------------

@pytest.mark.parametrize("name", ["Pipfile", "pyproject.toml", "uv.lock", "poetry.lock",
                                  "manage.py", "requirements.txt", "wsgi.py"])
def test_python_detected_from_its_files(tmp_path, name):
    (tmp_path / name).write_text("")
    (tmp_path / "index.html").write_text("")
    assert detect_type(tmp_path) == "python"


def test_pip_settings_reach_uv(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = file:///mirror/simple\nfind-links =\n  /w1\n  /w2\n"
                    "[install]\nextra_index_url = file:///a file:///b\ntrusted-host = h\n")
    env = uv_env({"PIP_CONFIG_FILE": str(conf), "PIP_NO_INDEX": "yes", "PIP_CERT": "/c.pem",
                  "UV_INDEX_STRATEGY": "first-index", "HOME": str(tmp_path)},
                 tmp_path / "cache")
    assert env["UV_DEFAULT_INDEX"] == "file:///mirror/simple"
    assert env["UV_EXTRA_INDEX_URL"] == "file:///a file:///b"
    assert env["UV_FIND_LINKS"] == "/w1,/w2"
    assert env["UV_INSECURE_HOST"] == "h" and env["UV_NO_INDEX"] == "1"
    assert env["SSL_CERT_FILE"] == "/c.pem"
    assert env["UV_CACHE_DIR"] == str(tmp_path / "cache")
    assert "UV_INDEX_STRATEGY" not in env       # the operator's own choice stays
    assert env["UV_PYTHON_DOWNLOADS"] == "never" and env["UV_COMPILE_BYTECODE"] == "1"
    assert uv_env({"PIP_CONFIG_FILE": os.devnull, "HOME": str(tmp_path)},
                  tmp_path)["UV_INDEX_STRATEGY"] == "unsafe-best-match"


# --- Django --------------------------------------------------------------------------

SETTINGS = """\
from pathlib import Path
BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "test"
INSTALLED_APPS = ["django.contrib.staticfiles"]
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "assets"]
"""
MANAGE = """\
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""


def django_app(settings):
    return {"requirements.txt": f"# {SALT}\ndjango>=4.2,<6\n", "manage.py": MANAGE,
            "site_settings/__init__.py": "", "site_settings/settings.py": settings,
            "assets/app.css": "body {}\n"}


@pytest.mark.slow
def test_collectstatic_runs_after_install(make_ctx):
    app = django_app(SETTINGS + 'STATIC_ROOT = BASE_DIR / "staticfiles"\n')
    ctx, lines, result, versions = built(make_ctx, app)
    assert "django" in versions
    assert (ctx.src / "staticfiles" / "app.css").read_text() == "body {}\n"
    assert "$ python manage.py collectstatic --noinput" in lines.lines
    assert any("static file" in line and "copied" in line for line in lines.lines)

    # Cached dependencies: collectstatic still runs, for the new tree.
    again, lines2 = make_ctx({"wsgi.py": WSGI, **app})
    assert build_service(again).incremental is True
    assert (again.src / "staticfiles" / "app.css").is_file()


@pytest.mark.slow
def test_collectstatic_disabled_by_the_environment(make_ctx):
    app = django_app(SETTINGS + 'STATIC_ROOT = BASE_DIR / "staticfiles"\n')
    ctx, lines, _, _ = built(make_ctx, app, env={"DISABLE_COLLECTSTATIC": "1"})
    assert "Skipping Django collectstatic: DISABLE_COLLECTSTATIC is set" in lines.lines
    assert not (ctx.src / "staticfiles").exists()


@pytest.mark.slow
def test_collectstatic_skipped_without_static_root(make_ctx):
    ctx, lines, _, _ = built(make_ctx, django_app(SETTINGS))
    assert "Skipping Django collectstatic: the settings have no STATIC_ROOT" in lines.lines
    assert not any("Traceback" in line for line in lines.lines)


@pytest.mark.slow
def test_collectstatic_failure_fails_the_build_with_its_output(make_ctx):
    broken = SETTINGS + ('STATIC_ROOT = BASE_DIR / "staticfiles"\n'
                         'STORAGES = {"staticfiles": {"BACKEND": "nowhere.Storage"}}\n')
    ctx, lines = make_ctx({"wsgi.py": WSGI, **django_app(broken)}, postbuild="touch post")
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == ("collectstatic failed (exit 1); its output is above "
                               "(set DISABLE_COLLECTSTATIC=1 to skip it)")
    assert any("nowhere" in line for line in lines.lines)
    assert not (ctx.src / "post").exists()


@pytest.mark.slow
def test_requirements_txt_with_hashes_still_gets_gunicorn(make_ctx):
    # pip-compile --generate-hashes output: hash-checking mode for the file,
    # gunicorn installed after it with its pins held.
    six = (f"six=={OLD_SIX} \\\n"
           "    --hash=sha256:30639c035cdb23534cd4aa2dd52c3bf48f06e5f4a941509c8bafd8ce11080259 \\\n"
           "    --hash=sha256:8b74bedcbbbaca38ff6d7491d76f2b06b3592611af620f8426e82dddb04a5ced\n")
    ctx, lines, result, versions = built(make_ctx, {"requirements.txt": f"# {SALT}\n{six}"})
    assert versions["six"] == OLD_SIX and "gunicorn" in versions
    assert any(l.startswith("Installing gunicorn") and l.endswith("with uv") for l in lines.lines)


@pytest.mark.slow
@pytest.mark.parametrize("lock_file", ["requirements.txt", "Pipfile.lock"])
def test_pip_and_uv_install_the_same_files(make_ctx, tools, tmp_path, lock_file):
    # The engine is chosen by measurement only where results are identical:
    # the same distributions, the same modules and the same bytecode files.
    files = {"requirements.txt": f"# {SALT}\nsix=={OLD_SIX}\nidna\n"} \
        if lock_file == "requirements.txt" else {"Pipfile": f'[packages]\nsix = "=={OLD_SIX}"\n'}
    ctx, _ = make_ctx({"wsgi.py": WSGI, **files})
    if lock_file == "Pipfile.lock":
        lock(tools, ctx.src, str(tools / "v/bin/pipenv"), "lock")
    trees = {}
    for engine in ("pip", "uv"):
        own = dataclasses.replace(ctx, cache_dir=tmp_path / engine)
        result = PythonBuildpack(engine=engine).build(own)
        site = next(Path(result.env["VIRTUAL_ENV"]).glob("lib/python*/site-packages"))
        trees[engine] = (installed(result.env["VIRTUAL_ENV"]), sorted(
            str(p.relative_to(site)) for p in site.rglob("*")
            if p.is_file() and ".dist-info" not in str(p)))
    assert trees["pip"] == trees["uv"]
    assert any(name.endswith(".pyc") for name in trees["uv"][1])


@pytest.mark.slow
def test_build_file_requirements_beside_a_lock(make_ctx, tools):
    # Resolved after the lock, with its pins held: the lock's six stays.
    ctx, lines, result, versions = built(
        make_ctx, {"pyproject.toml": PYPROJECT},
        lambda src: lock(tools, src, uv_binary(), "lock", "-q"),
        requirements=("itsdangerous==2.1.2", "six"))
    assert versions["six"] == OLD_SIX and versions["itsdangerous"] == "2.1.2"
    assert any(l.startswith("Installing itsdangerous==2.1.2, six, gunicorn") and l.endswith("with uv")
               for l in lines.lines)


def test_older_pythons_get_setuptools_with_pkg_resources_unless_pinned(make_ctx):
    # gunicorn before 20.1 and many older locks import pkg_resources at boot.
    ctx, lines, result, versions = built(make_ctx, {"requirements.txt": f"# {SALT} tools\nsix\n"})
    assert versions["setuptools"] == "70.3.0"
    ctx, lines, result, versions = built(
        make_ctx, {"requirements.txt": f"# {SALT} pinned\nsix\nsetuptools==69.5.1\n"})
    assert versions["setuptools"] == "69.5.1"


def test_what_counts_as_the_app_installing_setuptools():
    from buildpacks.python import _installs_setuptools as named
    assert named("requirements.txt", "six\nsetuptools==69.5.1\n")
    assert named("requirements.txt", "SetupTools>=60 ; python_version < '3.12'\n")
    assert not named("requirements.txt", "setuptools-scm==8.0\n# setuptools is not here\n")
    # only an extra of another package in a lock: not installed (seen in a poetry.lock of 2022)
    assert not named("poetry.lock", '[[package]]\nname = "isort"\n\n[package.extras]\n'
                                    'plugins = ["setuptools"]\n')
    assert named("poetry.lock", '[[package]]\nname = "setuptools"\nversion = "65.0.0"\n')
    assert named("uv.lock", '[[package]]\nname = "setuptools"\n')
    assert named("Pipfile.lock", '{"default": {"setuptools": {"version": "==69.0.0"}}}')
    assert not named("Pipfile.lock", '{"default": {}, "develop": {"setuptools": {}}}')
    assert named("Pipfile", '[packages]\nsetuptools = "*"\n')
    assert named("pyproject.toml", '[project]\ndependencies = ["setuptools>=60"]\n')
    assert not named("pyproject.toml", '[build-system]\nrequires = ["setuptools>=61"]\n'
                                       '[project]\ndependencies = ["six"]\n')
