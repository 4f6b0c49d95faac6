"""python and python-worker builds with the real pip, and the app they produce answering."""
import sys
import threading
import time

import pytest

from buildpacks import build_service, plan
from buildpacks.cache import content_key
from dotcloud.errors import BuildError

WSGI = """\
import os

import six

def application(environ, start_response):
    body = ("six %s, MODE=%s" % (six.__version__, os.environ.get("MODE", "?"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""
# A per-session salt keeps these builds clean on a machine whose cache has
# seen them before, and shared between the tests of one session.
SALT = f"# session {content_key(str(time.time()))[:12]}\n"
APP = {"requirements.txt": SALT + "six\n", "wsgi.py": WSGI}


def pip_ran(lines):
    """An installer ran (uv on this host)."""
    return "Installing requirements.txt with uv" in lines.lines


@pytest.mark.slow
def test_first_build_installs_then_second_is_incremental(make_ctx, run_service, http):
    ctx, lines = make_ctx(APP, environment={"MODE": "prod"})
    assert plan(ctx) is False
    result = build_service(ctx)
    assert pip_ran(lines) and result.incremental is False
    assert any("six" in line for line in lines.lines)
    venv = result.env["VIRTUAL_ENV"]
    assert venv.startswith(str(ctx.cache_dir / "python"))
    assert str((ctx.release_dir / ".deps" / "www-python").resolve()) == venv
    assert result.env["PATH"].startswith(f"{venv}/bin:")
    assert result.env["PYTHONUNBUFFERED"] == "1"
    assert result.http is True
    web = result.processes["web"]
    assert web[:3] == (f"{venv}/bin/python", "-m", "gunicorn")
    assert "127.0.0.1:{port}" in web and web[-1] == "wsgi:application"
    with run_service(ctx, result) as url:
        status, _, body = http(url + "/")
        assert status == 200 and body.startswith(b"six 1.") and body.endswith(b"MODE=prod")

    again, lines2 = make_ctx(APP, environment={"MODE": "prod"})
    assert plan(again) is True
    started = time.monotonic()
    second = build_service(again)
    elapsed = time.monotonic() - started
    assert second.incremental is True and not pip_ran(lines2)
    assert lines2.lines == [f"Using Python {sys.version.split()[0]} (the platform default)",
                            "Requirements unchanged: reusing the virtualenv of an earlier build"]
    assert second.env == result.env
    print(f"incremental build: {elapsed:.3f}s")
    with run_service(again, second) as url:
        assert http(url + "/")[0] == 200


@pytest.mark.slow
def test_changed_requirements_build_a_new_virtualenv(make_ctx):
    first, _ = make_ctx(APP)
    second, lines = make_ctx({**APP, "requirements.txt": APP["requirements.txt"] + "\n"},
                             requirements=("idna",))
    assert plan(second) is False
    a, b = build_service(first), build_service(second)
    assert a.env["VIRTUAL_ENV"] != b.env["VIRTUAL_ENV"]
    assert pip_ran(lines)


@pytest.mark.slow
def test_processes_replace_nothing_but_add_to_the_default_web(make_ctx):
    ctx, _ = make_ctx(APP, processes={"jobs": "python -c 'import six'"})
    result = build_service(ctx)
    assert list(result.processes) == ["web", "jobs"]
    assert result.processes["jobs"] == ("/bin/sh", "-c", "python -c 'import six'")


@pytest.mark.slow
def test_python_worker_runs_processes_without_http(make_ctx):
    ctx, _ = make_ctx(APP, type="python-worker",
                      processes={"worker": "python -c 'import six; print(six.PY3)'"})
    result = build_service(ctx)
    assert result.http is False and list(result.processes) == ["worker"]


@pytest.mark.slow
def test_concurrent_builds_of_the_same_requirements_install_once(make_ctx):
    files = {"requirements.txt": SALT + "# concurrent\nsix\n", "wsgi.py": WSGI}
    contexts = [make_ctx(files) for _ in range(3)]
    results, errors = [], []

    def build(ctx):
        try:
            results.append(build_service(ctx))
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=build, args=(ctx,)) for ctx, _ in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(pip_ran(lines) for _, lines in contexts) == 1
    assert len({r.env["VIRTUAL_ENV"] for r in results}) == 1
    assert sorted(r.incremental for r in results) == [False, True, True]


def test_pip_failure_fails_the_build_with_pip_output(make_ctx, cache_dir):
    ctx, lines = make_ctx({"requirements.txt": SALT + "six===!!broken\n", "wsgi.py": WSGI})
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == "uv install failed (exit 2)"
    assert any("six===!!broken" in line for line in lines.lines)
    # the half-built virtualenv is gone, so the next push tries again
    assert plan(ctx) is False
    assert not [p for p in (cache_dir / "python").iterdir()
                if not p.name.startswith(".") and not (p / ".complete").exists()]


def test_nothing_to_run_is_refused_before_installing(make_ctx):
    ctx, lines = make_ctx({"requirements.txt": SALT})
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == ("service 'www': nothing to run: add a wsgi.py with a WSGI "
                               "'application', 'processes' in dotcloud.yml, or a Procfile")
    assert not pip_ran(lines)


def test_bad_workers_config_is_refused_before_building(make_ctx):
    ctx, lines = make_ctx(APP, config={"workers": 0})
    with pytest.raises(BuildError, match="config 'workers' must be an integer from 1 to 64"):
        build_service(ctx)
    assert lines.lines == []


def test_included_requirements_count_in_the_cache_key(make_ctx):
    base = {"requirements.txt": SALT + "-r reqs/base.txt\n", "wsgi.py": WSGI}
    one, _ = make_ctx({**base, "reqs/base.txt": "six\n"})
    two, _ = make_ctx({**base, "reqs/base.txt": "six\nidna\n"})
    from buildpacks.python import PythonBuildpack
    key = PythonBuildpack()._entry
    assert key(one)[0].key != key(two)[0].key


def test_include_outside_the_tree_is_refused(make_ctx):
    ctx, _ = make_ctx({"requirements.txt": "-r ../../../etc/passwd\n", "wsgi.py": WSGI})
    with pytest.raises(BuildError, match="'../../../etc/passwd' is outside the repository"):
        build_service(ctx)


def test_missing_include_is_refused(make_ctx):
    ctx, _ = make_ctx({"requirements.txt": "-r other.txt\n", "wsgi.py": WSGI})
    with pytest.raises(BuildError, match="included file 'other.txt' not found"):
        build_service(ctx)


@pytest.mark.slow
def test_requirements_from_the_tree_itself_get_a_private_virtualenv(make_ctx):
    files = {"requirements.txt": "-e .\n", "wsgi.py": WSGI,
             "pyproject.toml": "[project]\nname = 'localapp'\nversion = '1.0'\n"
                               "dependencies = ['six']\n"
                               "[build-system]\nrequires = ['setuptools>=61']\n"
                               "build-backend = 'setuptools.build_meta'\n"
                               "[tool.setuptools]\npy-modules = ['wsgi']\n"}
    ctx, lines = make_ctx(files)
    assert plan(ctx) is False
    result = build_service(ctx)
    assert result.env["VIRTUAL_ENV"] == str(ctx.release_dir / ".venv" / "www")
    assert result.incremental is False
    assert lines.lines[1].startswith("requirements.txt installs from the repository itself")


def test_venv_python_is_this_interpreter(make_ctx):
    # The cache key names the interpreter, so a server upgrade rebuilds.
    from buildpacks.python import _interpreter_id
    assert sys.version in _interpreter_id(make_ctx(APP)[0])


@pytest.mark.slow
def test_postbuild_runs_with_the_virtualenv(make_ctx):
    ctx, _ = make_ctx(APP, prebuild="python -c 'import six' 2>/dev/null || echo no six yet",
                      postbuild="python -c 'import six, sys; print(sys.prefix)' > built")
    result = build_service(ctx)
    assert (ctx.src / "built").read_text().strip() == result.env["VIRTUAL_ENV"]


@pytest.mark.slow
def test_wsgi_app_without_requirements_file(make_ctx, run_service, http):
    ctx, lines = make_ctx({"wsgi.py": WSGI.replace("import six", "six = __import__('gunicorn')")
                                          .replace("six.__version__", "'gunicorn'")})
    result = build_service(ctx)
    with run_service(ctx, result) as url:
        assert http(url + "/")[2].startswith(b"six gunicorn")


def test_plan_is_false_when_the_build_would_fail(make_ctx):
    ctx, _ = make_ctx({"requirements.txt": "-r missing.txt\n", "wsgi.py": WSGI})
    assert plan(ctx) is False


def test_an_include_reached_twice_is_read_once(make_ctx):
    from buildpacks.python import requirement_files
    ctx, _ = make_ctx({"requirements.txt": "-r a.txt\n-r b.txt\n", "a.txt": "-r b.txt\nsix\n",
                       "b.txt": "idna\n"})
    files, local = requirement_files(ctx.src)
    assert [rel for rel, _ in files] == ["requirements.txt", "a.txt", "b.txt"]
    assert local is False
