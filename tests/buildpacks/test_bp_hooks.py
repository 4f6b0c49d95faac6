"""User hooks (prebuild, postbuild, postinstall), custom builds and unsupported types."""
import os
import shutil

import pytest

from buildpacks import build_service, plan, run_postinstall
from dotcloud.errors import BuildError, DeployError
from runtime.executor import HOST


def test_prebuild_then_buildscript_then_postbuild_in_approot(make_ctx):
    ctx, lines = make_ctx(
        {"step.sh": ("#!/bin/sh\necho \"$1 in $(basename $PWD) MODE=$MODE\" | tee -a order\n", 0o755)},
        type="custom", approot="app", env={"MODE": "prod"},
        prebuild="./step.sh prebuild", buildscript="./step.sh buildscript",
        postbuild="./step.sh postbuild", processes={"web": "./server", "jobs": "./jobs"})
    result = build_service(ctx)
    assert (ctx.src / "order").read_text().splitlines() == [
        "prebuild in app MODE=prod", "buildscript in app MODE=prod", "postbuild in app MODE=prod"]
    assert lines.lines == [
        "Running prebuild: ./step.sh prebuild", "prebuild in app MODE=prod",
        "Running buildscript: ./step.sh buildscript", "buildscript in app MODE=prod",
        "Running postbuild: ./step.sh postbuild", "postbuild in app MODE=prod"]
    assert dict(result.processes) == {"web": ("/bin/sh", "-c", "./server"),
                                      "jobs": ("/bin/sh", "-c", "./jobs")}
    assert result.http is True and result.incremental is False
    assert result.size_bytes == os.path.getsize(ctx.src / "step.sh") + os.path.getsize(
        ctx.src / "order")
    assert plan(ctx) is False


def test_custom_without_web_is_not_http(make_ctx):
    ctx, _ = make_ctx({}, type="custom", processes={"worker": "sleep 100"})
    assert build_service(ctx).http is False


@pytest.mark.parametrize("hook", ["prebuild", "postbuild", "buildscript"])
def test_failing_hook_fails_the_build_with_its_output_shown(make_ctx, hook):
    ctx, lines = make_ctx({}, type="custom", processes={"web": "x"},
                          **{hook: "echo compiling; echo 'error: no such thing' >&2; exit 3"})
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == f"{hook} failed (exit 3)"
    assert lines.lines[-2:] == ["compiling", "error: no such thing"]


def test_failing_prebuild_stops_the_build_before_it_starts(make_ctx):
    ctx, lines = make_ctx({}, type="custom", processes={"web": "x"}, prebuild="exit 1",
                          buildscript="touch built")
    with pytest.raises(BuildError, match=r"^prebuild failed \(exit 1\)$"):
        build_service(ctx)
    assert not (ctx.src / "built").exists()


def test_hook_deadline(make_ctx):
    ctx, _ = make_ctx({}, type="custom", processes={"web": "x"}, prebuild="sleep 30", timeout=0.5)
    with pytest.raises(BuildError, match=r"^prebuild timed out after 0.5s$"):
        build_service(ctx)


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_data_services_declare_their_server(make_ctx, kind):
    ctx, _ = make_ctx({}, name="db", type=kind)
    result = build_service(ctx)
    assert not result.http
    (argv,) = result.processes.values()
    assert "{port}" in argv and any("{datadir}" in a for a in argv)


def test_custom_without_processes_is_refused(make_ctx):
    ctx, _ = make_ctx({}, type="custom")
    with pytest.raises(BuildError, match="type custom needs 'processes'"):
        build_service(ctx)


def test_static_site_declares_the_static_server(make_ctx):
    ctx, _ = make_ctx({"index.html": "hi"}, type="static", config={"max_age": 60})
    result = build_service(ctx)
    argv = result.processes["web"]
    assert argv[1] == "-I"
    assert argv[2].endswith("buildpacks/staticserve.py")
    assert argv[3:] == ("--root", str(ctx.src), "--bind", "127.0.0.1", "--port", "{port}",
                        "--max-age", "60")
    assert result.http is True and result.size_bytes == 2


def test_static_bad_max_age_is_refused(make_ctx):
    ctx, _ = make_ctx({"index.html": "hi"}, type="static", config={"max_age": "forever"})
    with pytest.raises(BuildError, match="config 'max_age' must be a number of seconds"):
        build_service(ctx)


def postinstall_ctx(tmp_path, script, mode=0o755):
    path = tmp_path / "postinstall"
    path.write_text(script)
    path.chmod(mode)
    return tmp_path


def test_postinstall_runs_in_src_with_the_given_env(tmp_path):
    src = postinstall_ctx(tmp_path, "#!/bin/sh\necho \"setting up $APP_ENV in $PWD\"\n"
                                    "touch installed\n")
    lines = []
    assert run_postinstall(src, {"APP_ENV": "prod", "PATH": os.environ["PATH"]}, lines.append,
                           executor=HOST)
    assert lines == [f"setting up prod in {src}"]
    assert (src / "installed").exists()


def test_postinstall_failure_fails_the_deploy(tmp_path):
    src = postinstall_ctx(tmp_path, "#!/bin/sh\necho migrating\necho 'db down' >&2\nexit 4\n")
    lines = []
    with pytest.raises(DeployError) as info:
        run_postinstall(src, {"PATH": os.environ["PATH"]}, lines.append, executor=HOST)
    assert str(info.value) == "postinstall failed (exit 4)"
    assert lines == ["migrating", "db down"]


def test_postinstall_deadline(tmp_path):
    src = postinstall_ctx(tmp_path, "#!/bin/sh\nsleep 30\n")
    with pytest.raises(DeployError) as info:
        run_postinstall(src, {"PATH": os.environ["PATH"]}, lambda line: None, executor=HOST,
                        timeout=0.5)
    assert str(info.value) == "postinstall timed out after 0.5s"


def test_no_postinstall_is_fine(tmp_path):
    assert run_postinstall(tmp_path, {}, lambda line: None, executor=HOST) is False


def test_postinstall_not_executable_is_skipped_with_a_hint(tmp_path):
    src = postinstall_ctx(tmp_path, "#!/bin/sh\ntouch ran\n", mode=0o644)
    lines = []
    assert run_postinstall(src, {}, lines.append, executor=HOST) is False
    assert lines == ["postinstall is not executable (chmod +x postinstall and push again); "
                     "skipped"]
    assert not (src / "ran").exists()


def test_postinstall_without_interpreter_line_is_a_clear_error(tmp_path):
    src = postinstall_ctx(tmp_path, "echo no shebang\n")
    with pytest.raises(DeployError, match=r"^postinstall could not start: Exec format error"):
        run_postinstall(src, {}, lambda line: None, executor=HOST)


@pytest.mark.skipif(not shutil.which("npm"), reason="npm is not installed")
def test_server_side_os_errors_become_one_line(make_ctx):
    ctx, _ = make_ctx({"index.html": "hi"}, type="nodejs", processes={"web": "x"},
                      env={"COUNT": 3})
    assert ctx.env["COUNT"] == "3"
    (ctx.src / "package.json").write_text("{}")
    ctx.cache_dir.joinpath("node").mkdir(parents=True, exist_ok=True)
    blocker = ctx.release_dir / ".deps"
    blocker.write_text("a file where a directory goes")
    try:
        with pytest.raises(BuildError, match=r"^build failed on the server: "):
            build_service(ctx)
    finally:
        blocker.unlink()
