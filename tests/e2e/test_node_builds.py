"""Node apps through a real push: node_modules is a real directory of the app."""
import json
import os
import shutil
import subprocess

import pytest
from platform_helpers import git_repo

pytestmark = pytest.mark.slow

# What sass does in a Bootstrap template: find the app's sources from a
# package's own location, through node_modules/.. (resolved, not lexical).
BUILD_JS = """\
const fs = require("fs"), path = require("path");
const ms = path.dirname(require.resolve("ms/package.json"));
require("is-number");   // a devDependency: there for the build
fs.writeFileSync("out.txt", fs.readFileSync(path.join(ms, "..", "..", "src", "x.txt")));
"""
SERVER_JS = """\
const http = require("http");
let dev = true;
try { require.resolve("is-number"); } catch (e) { dev = false; }
http.createServer((q, s) => s.end(JSON.stringify({
  built: require("fs").readFileSync("out.txt", "utf8"), NODE_ENV: process.env.NODE_ENV, dev,
  ms: require("ms/package.json").version,
}))).listen(process.env.PORT, "127.0.0.1");
"""
PACKAGE = {"name": "site", "version": "1.0.0", "private": True,
           "dependencies": {"ms": "2.0.0"}, "devDependencies": {"is-number": "7.0.0"},
           "scripts": {"build": "node build.js", "start": "node server.js"}}


def test_build_reads_the_app_through_node_modules_then_reuses_them(platform, tmp_path):
    files = {"package.json": json.dumps(PACKAGE), "build.js": BUILD_JS,
             "server.js": SERVER_JS, "src/x.txt": "from src"}
    repo = git_repo(tmp_path / "nm", files)
    # The lock is made here by the real npm, so no registry host is committed.
    subprocess.run(["npm", "install", "--package-lock-only", "--ignore-scripts"], cwd=repo,
                   check=True, capture_output=True, timeout=300)
    repo = git_repo(repo, {}, "lock")
    r = platform.push("alice", repo, "nodemods")
    assert r.code == 0, r.text
    assert "Installing dependencies with npm ci" in r.err, r.err
    assert "Running build script" in r.err and "Pruning devDependencies" in r.err, r.err
    status, body, _ = platform.get("nodemods.localhost")
    assert status == 200, body
    assert json.loads(body) == {"built": "from src", "NODE_ENV": "production", "dev": False,
                                "ms": "2.0.0"}

    repo = git_repo(repo, {"src/x.txt": "changed"}, "only the source")
    r = platform.push("alice", repo, "nodemods")
    assert r.code == 0, r.text
    assert "Dependencies unchanged: node_modules linked from an earlier build" in r.err, r.err
    assert "Installing dependencies" not in r.err, r.err
    status, body, _ = platform.get("nodemods.localhost")
    assert json.loads(body)["built"] == "changed"


def make_lock(tmp_path, name, version, package):
    """The lock the real yarn or pnpm writes, the tool fetched as the platform does."""
    from buildpacks.base import BuildContext, base_env
    from buildpacks.nodemanagers import Manager, fetch, tool_env
    from buildpacks.spec import ServiceSpec
    from runtime.executor import HOST

    work = tmp_path / f"lock-{name}"
    work.mkdir()
    (work / "package.json").write_text(json.dumps(package))
    ctx = BuildContext(app="lockgen", service=ServiceSpec(name="www", type="nodejs"), src=work,
                       release_dir=work, cache_dir=tmp_path / "tool-cache", env={},
                       log=lambda line: None, executor=HOST)
    manager = Manager(name, version, None)
    npm = shutil.which("npm")
    tool = fetch(ctx, manager, shutil.which("node"), npm)
    env = {**base_env(), **tool_env(ctx, manager, npm)}
    env["PATH"] = f"{os.path.dirname(shutil.which('node'))}:{env['PATH']}"
    args = ("install", "--lockfile-only") if name == "pnpm" else ("install", "--ignore-scripts")
    subprocess.run([*tool.argv, *args], cwd=work, env=env, check=True, capture_output=True,
                   timeout=300)
    lock = "pnpm-lock.yaml" if name == "pnpm" else "yarn.lock"
    return lock, (work / lock).read_text()


@pytest.mark.parametrize("name,version,declared", [
    ("pnpm", "9.12.0", True), ("yarn", "1.22.22", False)])
def test_yarn_and_pnpm_apps(platform, tmp_path, name, version, declared):
    package = dict(PACKAGE, **({"packageManager": f"{name}@{version}"} if declared else {}))
    package["scripts"] = dict(PACKAGE["scripts"], start=f"{name} run serve",
                              serve="node server.js")
    lock, text = make_lock(tmp_path, name, version, package)
    # pnpm's node_modules/ms leads into node_modules/.pnpm, so its build
    # reads the source directly.
    build = BUILD_JS.replace('path.join(ms, "..", "..", "src", "x.txt")', '"src/x.txt"')
    repo = git_repo(tmp_path / name, {
        "package.json": json.dumps(package), lock: text, "build.js": build,
        "server.js": SERVER_JS, "src/x.txt": f"built by {name}"})
    r = platform.push("alice", repo, f"node{name}")
    assert r.code == 0, r.text
    assert f"and {name}@{version}" in r.err and "Pruning devDependencies" in r.err, r.err
    status, body, _ = platform.get(f"node{name}.localhost")
    assert status == 200, body
    assert json.loads(body) == {"built": f"built by {name}", "NODE_ENV": "production",
                                "dev": False, "ms": "2.0.0"}


def test_yarn1_prunes_an_app_whose_dependency_has_a_bin(platform, tmp_path):
    # yarn 1's prune links every kept bin again and chmods its target: as
    # the app's user, a target hard-linked to the sealed (root's) cache
    # entry made that EPERM ("pruning devDependencies failed").
    package = dict(PACKAGE, dependencies={"ms": "2.0.0", "semver": "5.7.1"})
    lock, text = make_lock(tmp_path, "yarn", "1.22.22", package)
    repo = git_repo(tmp_path / "yarnbin", {
        "package.json": json.dumps(package), lock: text, "build.js": BUILD_JS,
        "server.js": SERVER_JS, "src/x.txt": "bins"})
    r = platform.push("alice", repo, "yarnbin")
    assert r.code == 0, r.text
    assert "Pruning devDependencies" in r.err, r.err
    status, body, _ = platform.get("yarnbin.localhost")
    assert status == 200 and json.loads(body)["dev"] is False, body
    # the next push links the same cached install and prunes it again
    r = platform.push("alice", git_repo(repo, {"src/x.txt": "again"}, "again"), "yarnbin")
    assert r.code == 0, r.text
    assert "node_modules linked from an earlier build" in r.err, r.err
