"""nodejs builds with the real npm, and the servers they produce answering."""
import json
import os
import shutil
import time

import pytest

from buildpacks import build_service, plan
from buildpacks.cache import content_key
from dotcloud.errors import BuildError

SERVER = """\
const http = require("http");
const isNumber = require("is-number");
http.createServer((req, res) => {
  res.end(`is-number(5)=${isNumber(5)} MODE=${process.env.MODE} via=${process.argv[2] || "node"}`);
}).listen(process.env.PORT, "127.0.0.1");
"""
# Unique per session: the first build of each shape below is a clean one.
SALT = content_key(str(time.time()))[:12]


def package(**extra):
    return json.dumps({"name": "app", "version": "1.0.0", "description": SALT,
                       "dependencies": {"is-number": "^7.0.0"}, **extra})


def npm_ran(lines):
    return any(line.startswith("Installing dependencies with npm") for line in lines.lines)


@pytest.fixture(scope="module")
def lock_file(make_ctx):
    """A package-lock.json made by npm install, for the npm ci tests."""
    ctx, _ = make_ctx({"package.json": package(), "server.js": SERVER}, type="nodejs")
    build_service(ctx)
    entry = (ctx.release_dir / ".deps" / "www-node").resolve()
    return (entry / "package-lock.json").read_text()


needs_npm = pytest.mark.skipif(not shutil.which("npm"), reason="npm is not installed")


@needs_npm
@pytest.mark.slow
def test_npm_install_without_lock_then_incremental(make_ctx, run_service, http):
    files = {"package.json": package(), "server.js": SERVER}
    ctx, lines = make_ctx(files, type="nodejs", environment={"MODE": "prod"})
    assert plan(ctx) is False
    result = build_service(ctx)
    assert "Installing dependencies with npm install" in lines.lines
    assert result.incremental is False and result.http is True
    modules = ctx.src / "node_modules"
    # A real directory of the app, its files hard links into the cache.
    assert modules.is_dir() and not modules.is_symlink()
    entry = (ctx.release_dir / ".deps" / "www-node").resolve()
    assert str(entry).startswith(str(ctx.cache_dir / "node"))
    index = modules / "is-number" / "index.js"
    assert os.path.samefile(index, entry / "node_modules" / "is-number" / "index.js")
    assert result.processes["web"][1:] == (str(ctx.src / "server.js"),)
    assert result.env["NODE_ENV"] == "production"
    assert result.env["PATH"].startswith(f"{modules}/.bin:")
    with run_service(ctx, result) as url:
        status, _, body = http(url)
        assert (status, body) == (200, b"is-number(5)=true MODE=prod via=node")

    again, lines2 = make_ctx(files, type="nodejs")
    assert plan(again) is True
    second = build_service(again)
    assert second.incremental is True and not npm_ran(lines2)
    assert "Dependencies unchanged: node_modules linked from an earlier build" in lines2.lines
    assert os.path.samefile(again.src / "node_modules" / "is-number" / "index.js", index)
    assert (again.release_dir / ".deps" / "www-node").resolve() == entry


@needs_npm
@pytest.mark.slow
def test_npm_ci_with_lock_file_and_npm_start(make_ctx, run_service, http, lock_file):
    files = {"package.json": package(scripts={"start": "node server.js started-by-npm"}),
             "package-lock.json": lock_file, "server.js": SERVER}
    ctx, lines = make_ctx(files, type="nodejs", environment={"MODE": "ci"})
    result = build_service(ctx)
    assert "Installing dependencies with npm ci" in lines.lines
    assert result.processes["web"][1:] == ("start", "--no-update-notifier")
    with run_service(ctx, result) as url:
        assert http(url)[2] == b"is-number(5)=true MODE=ci via=started-by-npm"


@needs_npm
@pytest.mark.slow
def test_lock_file_out_of_sync_fails_npm_ci(make_ctx, lock_file):
    files = {"package.json": package(dependencies={"is-number": "^7.0.0", "is-odd": "^3.0.0"}),
             "package-lock.json": lock_file, "server.js": SERVER}
    ctx, lines = make_ctx(files, type="nodejs")
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == "npm ci failed (exit 1)"
    assert any("npm error" in line for line in lines.lines)
    assert plan(ctx) is False


@needs_npm
def test_processes_and_no_package_json(make_ctx):
    ctx, lines = make_ctx({"worker.js": "setInterval(() => {}, 1000)"}, type="nodejs",
                          processes={"worker": "node worker.js"})
    result = build_service(ctx)
    assert dict(result.processes) == {"worker": ("/bin/sh", "-c", "node worker.js")}
    assert result.http is False and not npm_ran(lines)
    assert not os.path.lexists(ctx.src / "node_modules")


@needs_npm
@pytest.mark.parametrize("files", [{"lib.js": ""}, {"lib.js": "", "package.json": package()}])
def test_nothing_to_run_is_refused_before_installing(make_ctx, files):
    ctx, lines = make_ctx(files, type="nodejs")
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == ("service 'www': nothing to run: add a 'start' script to "
                               "package.json, a server.js, 'processes' in dotcloud.yml, "
                               "or a Procfile")
    assert not npm_ran(lines)


@needs_npm
@pytest.mark.parametrize("text,message", [
    ("{not json", "package.json is not valid JSON: "),
    ("[1, 2]", "package.json must be a JSON object"),
])
def test_bad_package_json_is_refused(make_ctx, text, message):
    ctx, _ = make_ctx({"package.json": text, "server.js": ""}, type="nodejs")
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value).startswith(message)


@needs_npm
@pytest.mark.slow
def test_committed_node_modules_is_replaced(make_ctx):
    files = {"package.json": package(), "server.js": SERVER,
             "node_modules/stale/index.js": "stale"}
    ctx, lines = make_ctx(files, type="nodejs")
    build_service(ctx)
    assert not (ctx.src / "node_modules" / "stale").exists()
    assert (ctx.src / "node_modules" / "is-number").is_dir()
    assert "node_modules from the repository replaced by the built one" in lines.lines


@needs_npm
@pytest.mark.slow
def test_postbuild_finds_node_modules_bin(make_ctx):
    ctx, _ = make_ctx({"package.json": package(), "server.js": SERVER}, type="nodejs",
                      postbuild='echo "$PATH $NODE_ENV" > built')
    build_service(ctx)
    path, node_env = (ctx.src / "built").read_text().split()
    assert path.startswith(f"{ctx.src}/node_modules/.bin:") and node_env == "production"


def test_missing_node_is_a_clear_error(make_ctx, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a server without Node.js
    ctx, _ = make_ctx({"package.json": package(), "server.js": SERVER}, type="nodejs")
    assert plan(ctx) is False
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == ("nodejs services need 'node' on the server; install Node.js "
                               "and npm")


@needs_npm
def test_package_json_leading_out_of_the_tree_is_refused(make_ctx, tmp_path):
    outside = tmp_path / "package.json"
    outside.write_text(package())
    ctx, _ = make_ctx({"server.js": SERVER}, type="nodejs")
    os.symlink(outside, ctx.src / "package.json")
    assert plan(ctx) is False
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == "package.json must be a regular file inside the repository"


@needs_npm
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_node_modules_file_or_link_in_the_repository_is_replaced(make_ctx, kind):
    ctx, _ = make_ctx({"package.json": package(), "server.js": SERVER}, type="nodejs")
    if kind == "file":
        (ctx.src / "node_modules").write_text("junk")
    else:
        os.symlink("/tmp", ctx.src / "node_modules")
    build_service(ctx)
    assert (ctx.src / "node_modules" / "is-number").is_dir()
