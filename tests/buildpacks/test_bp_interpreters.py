"""Choosing a service's Python: the files that ask, what is installed, and each refusal.

Installed interpreters are stood in for by tiny executables answering the
version probe, and by pyenv-style directories, so these tests say the same
on any machine whatever Pythons it has.
"""
import dataclasses
import os
import sys

import pytest

from buildpacks import build_service, interpreters
from runtime.executor import HOST
from buildpacks.interpreters import (PLATFORM_DEFAULT, Installed, Request, choose, discover,
                                     python_for, read_python_version_file, read_runtime_txt,
                                     requested_python)
from buildpacks.schema import parse
from buildpacks.spec import BuildfileError
from dotcloud.errors import BuildError

WSGI = "def application(environ, start_response):\n    pass\n"


def fake_python(path, answer="CPython 3.12.4"):
    """An executable answering the version probe as an interpreter would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{answer}'\n")
    path.chmod(0o755)
    return str(path)


def fake_pyenv(root, *names):
    for name in names:
        fake_python(root / "versions" / name / "bin" / "python3", f"CPython {name}")
    return root


def installed(*versions):
    return [Installed(f"/opt/py{v}/bin/python3", tuple(int(p) for p in v.split(".")),
                      f"/opt/py{v}/bin/python3") for v in versions]


# -- what the files say ------------------------------------------------------

@pytest.mark.parametrize("text, version", [
    ("3.12\n", (3, 12)),
    ("3.12.1", (3, 12, 1)),
    ("  3.13.0  \n\n", (3, 13, 0)),
    ("# the version Heroku builds with\n3.11\n", (3, 11)),
    ("\n# comment\n   # indented comment\n3.10.2\n", (3, 10, 2)),
])
def test_python_version_file_forms(text, version):
    assert read_python_version_file(text) == version


@pytest.mark.parametrize("text, message", [
    ("", ".python-version: no version in the file: write one such as 3.12 "
         "(lines starting with # are comments)"),
    ("# 3.12\n", ".python-version: no version in the file"),
    ("3.12\n3.11\n", ".python-version: more than one version (3.12, 3.11): keep one, such as "
                     "3.12, and start comment lines with #"),
    ("python-3.12\n", ".python-version: 'python-3.12' is not a Python version: write it without "
                      "'python-', such as 3.12"),
    ("3.12.x\n", ".python-version: '3.12.x' is not a Python version: write one such as 3.12 or "
                 "3.12.1"),
    ("03.12\n", ".python-version: '03.12' is not a Python version"),
    ("3\n", ".python-version: '3' is not a Python version"),
    ("system\n", ".python-version: 'system' is not a Python version"),
    ("3.12 # comment\n", ".python-version: '3.12 # comment' is not a Python version"),
])
def test_python_version_file_refusals(text, message):
    with pytest.raises(BuildError) as e:
        read_python_version_file(text)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("text, version", [
    ("python-3.12.1\n", (3, 12, 1)),
    ("python-3.12", (3, 12)),
    ("  python-3.9.18  \n", (3, 9, 18)),
])
def test_runtime_txt_forms(text, version):
    assert read_runtime_txt(text) == version


@pytest.mark.parametrize("text, message", [
    ("3.12.1\n", "runtime.txt: '3.12.1' is not a Python version: write one such as python-3.12 "
                 "or python-3.12.1"),
    ("python3.12\n", "runtime.txt: 'python3.12' is not a Python version"),
    ("python-3.12\npython-3.11\n", "runtime.txt: 'python-3.12 python-3.11' is not a Python "
                                   "version"),
    ("python-3.12.x", "runtime.txt: '3.12.x' is not a Python version: write one such as "
                      "python-3.12 or python-3.12.1"),
    ("", "runtime.txt: '' is not a Python version"),
])
def test_runtime_txt_refusals(text, message):
    with pytest.raises(BuildError) as e:
        read_runtime_txt(text)
    assert str(e.value).startswith(message)


def test_precedence_of_what_asks(tmp_path):
    config = {"python_version": "3.10"}
    assert requested_python(tmp_path, {}) is None
    assert requested_python(tmp_path, {}, "3.9") == Request((3, 9), "config.yml 'python_version'")
    assert requested_python(tmp_path, config, "3.9") == \
        Request((3, 10), "dotcloud.yml config 'python_version'")
    (tmp_path / "runtime.txt").write_text("python-3.11.7\n")
    assert requested_python(tmp_path, config, "3.9") == Request((3, 11, 7), "runtime.txt")
    (tmp_path / ".python-version").write_text("3.12\n")
    assert requested_python(tmp_path, config, "3.9") == Request((3, 12), ".python-version")


def test_a_bad_default_in_config_yml_names_it(tmp_path):
    with pytest.raises(BuildError, match=r"^config.yml 'python_version': '3.x' is not a Python"):
        requested_python(tmp_path, {}, "3.x")


def test_python_version_file_leading_out_of_the_tree_is_refused(tmp_path):
    (tmp_path / "outside").write_text("3.12\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / ".python-version").symlink_to(tmp_path / "outside")
    with pytest.raises(BuildfileError, match="^.python-version must be a regular file inside"):
        requested_python(src, {})


# -- choosing among what is installed ---------------------------------------

def test_minor_request_takes_the_newest_patch():
    found = installed("3.12.1", "3.12.10", "3.12.4", "3.13.0")
    assert choose(Request((3, 12), ".python-version"), found).version == (3, 12, 10)


def test_exact_request_takes_exactly_that():
    found = installed("3.12.1", "3.12.10", "3.12.4")
    assert choose(Request((3, 12, 4), "runtime.txt"), found).version == (3, 12, 4)


def test_equal_versions_go_to_the_first_found():
    first, second = installed("3.12.1") + [Installed("/usr/bin/python3.12", (3, 12, 1),
                                                     "/usr/bin/python3.12")]
    assert choose(Request((3, 12), ".python-version"), [first, second]) is first


def test_not_installed_is_refused_naming_the_file_and_what_is_installed():
    found = installed("3.7.16", "3.12.1", "3.13.0", "3.11.7")
    with pytest.raises(BuildError) as e:
        choose(Request((3, 14), ".python-version"), found)
    assert str(e.value) == (".python-version asks for Python 3.14, which is not installed here "
                            "(installed: 3.11.7, 3.12.1, 3.13.0)")
    with pytest.raises(BuildError) as e:
        choose(Request((3, 12, 2), "runtime.txt"), found)
    assert str(e.value) == ("runtime.txt asks for Python 3.12.2, which is not installed here "
                            "(installed: 3.11.7, 3.12.1, 3.13.0)")


def test_nothing_installed_says_so():
    with pytest.raises(BuildError, match=r"\(installed: none\)$"):
        choose(Request((3, 12), "dotcloud.yml config 'python_version'"), [])


@pytest.mark.parametrize("spec", [(2, 7), (3, 7), (3, 6, 15)])
def test_versions_before_3_8_are_refused_even_when_installed(spec):
    found = installed("2.7.18", "3.6.15", "3.7.16", "3.12.1")
    text = ".".join(map(str, spec))
    with pytest.raises(BuildError) as e:
        choose(Request(spec, ".python-version"), found)
    assert str(e.value) == (f".python-version asks for Python {text}, which is not supported: "
                            "3.8 or newer is needed (installed: 3.12.1)")


# -- finding what is installed ----------------------------------------------

def test_discovery_reads_path_usr_bin_pyenv_and_the_configured_list(tmp_path):
    bin_dir = tmp_path / "bin"
    on_path = fake_python(bin_dir / "python3.12", "CPython 3.12.4")
    fake_python(bin_dir / "python3-config", "CPython 3.99.0")          # not python3.X
    fake_python(bin_dir / "python3.10", "PyPy 3.10.14")                 # not CPython
    fake_python(bin_dir / "python3.9", "")                              # answers nothing
    (bin_dir / "python3.8").write_text("not executable")
    fake_python(tmp_path / "shims" / "python3.11", "CPython 3.11.99")   # a shim: skipped
    os.symlink(on_path, bin_dir / "python3.12-again")                   # not python3.X
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(on_path, other / "python3.12")                           # same binary: once
    root = fake_pyenv(tmp_path / "pyenv", "3.12.1", "3.13.0")
    fake_python(root / "versions" / "3.12-dev" / "bin" / "python3")      # not N.N.N
    fake_python(root / "versions" / "myenv" / "bin" / "python3")         # a virtualenv
    extra = fake_python(tmp_path / "opt" / "python", "CPython 3.11.3")
    found = discover([extra, str(tmp_path / "missing")], own=False, environ={
        "PATH": f"{tmp_path / 'shims'}:{bin_dir}:{other}:relative", "PYENV_ROOT": str(root)})
    got = [(i.path, i.version) for i in found if not i.path.startswith("/usr/bin/")]
    assert got == [(extra, (3, 11, 3)), (on_path, (3, 12, 4)),
                   (str(root / "versions/3.12.1/bin/python3"), (3, 12, 1)),
                   (str(root / "versions/3.13.0/bin/python3"), (3, 13, 0))]


def test_discovery_without_pyenv_root_looks_in_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_pyenv(tmp_path / ".pyenv", "3.12.7")
    found = discover(own=False, environ={"PATH": ""})
    assert (str(tmp_path / ".pyenv/versions/3.12.7/bin/python3"), (3, 12, 7)) in \
        [(i.path, i.version) for i in found]


def test_the_platforms_own_interpreter_is_a_candidate():
    found = discover(own=True, environ={"PATH": "", "PYENV_ROOT": "/nonexistent"})
    assert found[0].path == sys.executable
    assert found[0].version == tuple(sys.version_info[:3])


def test_a_probe_is_asked_once_per_binary(tmp_path):
    binary = tmp_path / "bin" / "python3.12"
    fake_python(binary, "CPython 3.12.4")
    environ = {"PATH": str(binary.parent), "PYENV_ROOT": str(tmp_path)}
    assert discover(own=False, environ=environ)[0].version == (3, 12, 4)
    binary.write_text("#!/bin/sh\necho 'CPython 3.12.5'\n")      # rewritten: asked again
    os.utime(binary, ns=(1, 1))
    assert discover(own=False, environ=environ)[0].version == (3, 12, 5)
    stamp = binary.stat()
    binary.write_text("#!/bin/sh\nexit 1\n")
    os.utime(binary, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # same stamp: the kept answer
    assert discover(own=False, environ=environ)[0].version == (3, 12, 5)


def test_discovery_is_kept_until_what_it_looked_at_changes(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir / "python3.12", "CPython 3.12.4")
    environ = {"PATH": str(bin_dir), "PYENV_ROOT": str(tmp_path / "pyenv")}
    first = discover(own=False, environ=environ)
    assert discover(own=False, environ=environ) == first
    fake_python(bin_dir / "python3.13", "CPython 3.13.1")                # a new binary
    fake_pyenv(tmp_path / "pyenv", "3.11.9")                             # a new pyenv version
    again = [(os.path.basename(i.path), i.version) for i in discover(own=False, environ=environ)
             if not i.path.startswith("/usr/bin/")]
    assert again == [("python3.12", (3, 12, 4)), ("python3.13", (3, 13, 1)),
                     ("python3", (3, 11, 9))]


# -- a service's build ------------------------------------------------------

@pytest.fixture
def host(tmp_path, monkeypatch):
    """This process's PATH and pyenv replaced by fakes: 3.12.99 on PATH, pyenv 3.12.1, 3.13.0."""
    fake_python(tmp_path / "bin" / "python3.12", "CPython 3.12.99")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("PYENV_ROOT", str(fake_pyenv(tmp_path / "pyenv", "3.12.1", "3.13.0")))
    return tmp_path


def test_python_for_chooses_and_names_the_source(make_ctx, host):
    ctx, _ = make_ctx({".python-version": "3.12\n", "wsgi.py": WSGI})
    chosen = python_for(ctx)
    assert chosen.path == str(host / "bin" / "python3.12")
    assert (chosen.version, chosen.source) == ("3.12.99", ".python-version")
    assert chosen.identity == f"3.12.99\n{host / 'bin' / 'python3.12'}"
    assert chosen.summary == "Using Python 3.12.99 (from .python-version)"
    exact, _ = make_ctx({"runtime.txt": "python-3.12.1\n"})
    assert python_for(exact).path == str(host / "pyenv/versions/3.12.1/bin/python3")
    listed, _ = make_ctx({}, config={"python_version": "3.11"})
    extra = fake_python(host / "opt" / "python3", "CPython 3.11.99")
    listed = dataclasses.replace(listed, python_interpreters=(extra,))
    assert (python_for(listed).path, python_for(listed).source) == \
        (extra, "dotcloud.yml config 'python_version'")


def test_the_default_is_the_platforms_own_interpreter(make_ctx, host):
    ctx, _ = make_ctx({"wsgi.py": WSGI})
    chosen = python_for(ctx)
    assert (chosen.path, chosen.source, chosen.identity) == \
        (sys.executable, PLATFORM_DEFAULT, HOST.identity)
    assert chosen.summary == f"Using Python {sys.version.split()[0]} (the platform default)"
    configured = dataclasses.replace(ctx, python_version="3.13.0")
    assert python_for(configured).version == "3.13.0"
    assert python_for(configured).summary == \
        "Using Python 3.13.0 (from config.yml 'python_version')"


def test_asking_for_the_platforms_own_version_shares_its_cache_key(make_ctx, host):
    own = ".".join(map(str, sys.version_info[:3]))
    ctx, _ = make_ctx({".python-version": own + "\n"})
    assert python_for(ctx).identity == HOST.identity


def test_a_version_not_installed_fails_the_build_before_any_hook(make_ctx, host):
    ctx, lines = make_ctx({".python-version": "3.14\n", "wsgi.py": WSGI},
                          prebuild="touch prebuild-ran")
    with pytest.raises(BuildError) as e:
        build_service(ctx)
    assert str(e.value) == (".python-version asks for Python 3.14, which is not installed here "
                            f"(installed: {installed_text()})")
    assert not (ctx.src / "prebuild-ran").exists() and lines.lines == []


def installed_text():
    versions = {".".join(map(str, i.version)) for i in discover()
                if i.version[:2] >= interpreters.MIN_PYTHON}
    return ", ".join(sorted(versions, key=lambda v: tuple(map(int, v.split(".")))))


def test_a_malformed_version_fails_the_build_naming_the_file(make_ctx, host):
    ctx, _ = make_ctx({"runtime.txt": "3.12\n", "wsgi.py": WSGI})
    with pytest.raises(BuildError, match=r"^runtime.txt: '3.12' is not a Python version"):
        build_service(ctx)


# -- dotcloud.yml's config python_version -----------------------------------

def test_config_python_version_is_kept_as_written():
    spec = parse("www:\n  type: python\n  config:\n    python_version: 3.10\n").services["www"]
    assert spec.config == {"python_version": "3.10"}
    spec = parse("www:\n  type: python-worker\n  processes: {w: x}\n"
                 "  config: {python_version: '3.12.1', workers: 3}\n").services["www"]
    assert spec.config == {"python_version": "3.12.1", "workers": 3}


@pytest.mark.parametrize("value", ["3", "x", "[3, 12]", "{a: 1}", "3.12.1.1", "python-3.12", "''"])
def test_config_python_version_must_be_a_version(value):
    with pytest.raises(BuildfileError) as e:
        parse(f"www:\n  type: python\n  config:\n    python_version: {value}\n")
    assert str(e.value) == ("dotcloud.yml line 4: service 'www': config 'python_version' must be "
                            "a Python version such as '3.12' or '3.12.1'")


def test_config_python_version_elsewhere_is_a_warning():
    buildfile = parse("www:\n  type: nodejs\n  config:\n    python_version: '3.12'\n")
    assert buildfile.warnings == ("dotcloud.yml line 4: service 'www': config 'python_version' "
                                  "is only used by python services (ignored)",)


# -- the docker runtime: the base image's tag is its version ----------------

@pytest.mark.parametrize("image, version", [
    ("python:3.12-slim", (3, 12)), ("python:3.12.1-slim-bookworm", (3, 12, 1)),
    ("registry:5000/python:3.11", (3, 11)), ("python:latest", None),
    ("registry:5000/python", None), ("python", None),
])
def test_image_version_reads_the_tag(image, version):
    assert interpreters.image_version(image) == version


def docker_ctx(make_ctx, files, image="python:3.12-slim", **fields):
    from runtime.docker_build import DockerExecutor
    ctx, _ = make_ctx(files, **fields)
    # Never started: a container is only made by a step's run.
    executor = DockerExecutor(None, image, "sha256:0123", "unused", {"user": "1000"})
    return dataclasses.replace(ctx, executor=executor)


def test_docker_builds_use_the_base_image_that_serves_the_request(make_ctx):
    chosen = python_for(docker_ctx(make_ctx, {".python-version": "3.12\n"}))
    assert (chosen.path, chosen.version, chosen.identity) == ("python3", "3.12",
                                                              "docker image sha256:0123")
    assert chosen.summary == "Using Python 3.12 of image python:3.12-slim (from .python-version)"
    default = python_for(docker_ctx(make_ctx, {}))
    assert default.summary == "Using Python 3.12 of image python:3.12-slim (the platform default)"
    exact = python_for(docker_ctx(make_ctx, {"runtime.txt": "python-3.12.1"},
                                  image="python:3.12.1-slim"))
    assert exact.version == "3.12.1"


@pytest.mark.parametrize("files, image, source, asked", [
    ({".python-version": "3.13\n"}, "python:3.12-slim", ".python-version", "3.13"),
    ({"runtime.txt": "python-3.12.1\n"}, "python:3.12-slim", "runtime.txt", "3.12.1"),
    ({".python-version": "3.12\n"}, "python:latest", ".python-version", "3.12"),
])
def test_docker_refuses_what_its_base_image_does_not_provide(make_ctx, files, image, source,
                                                             asked):
    with pytest.raises(BuildError) as e:
        python_for(docker_ctx(make_ctx, files, image=image))
    assert str(e.value) == (f"{source} asks for Python {asked}, which the docker runtime's base "
                            f"image {image} does not provide (set docker_python_image in "
                            "config.yml to an image of that version)")


def test_config_yml_python_version_must_be_quoted(tmp_path):
    from dotcloud.errors import UsageError
    from dotcloud.settings import load
    (tmp_path / "config.yml").write_text("python_version: 3.10\n")
    with pytest.raises(UsageError) as e:
        load(tmp_path)
    assert str(e.value) == (f"{tmp_path / 'config.yml'}: 'python_version' must be quoted, "
                            'e.g. "3.12"')
    (tmp_path / "config.yml").write_text("python_version: '3.10'\n")
    assert load(tmp_path).python_version == "3.10"
