"""nodejs builds with each package manager, against the real npm registry.

Lock files are made here by the real tools (fetched by the platform into the
test cache), so no registry host is committed. Each lock pins ms 2.0.0 for
the range ^2.0.0, whose newest is 2.1.x: 2.0.0 installed proves the lock
honoured.
"""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from buildpacks import build_service, plan
from buildpacks.base import base_env
from buildpacks.nodeinterpreters import choose
from buildpacks.nodemanagers import Manager, fetch, tool_env
from dotcloud.errors import BuildError

pytestmark = pytest.mark.skipif(not shutil.which("npm"), reason="npm is not installed")

# The build script needs the devDependency and records the pinned version.
BUILD = ("node -e \"require('is-number'); require('fs').writeFileSync('built.txt', "
         "require('ms/package.json').version)\"")
WORKER = {"worker": "node -e 'setInterval(() => {}, 1000)'"}


def app(**extra):
    return {"name": "app", "version": "1.0.0", "private": True,
            "dependencies": {"ms": "2.0.0"}, "devDependencies": {"is-number": "7.0.0"},
            **extra}


def run(argv, cwd, env):
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def make_lock(make_ctx, tmp_path, manager, package):
    """(package.json text, lock name, lock text) with ms ^2.0.0 locked at 2.0.0."""
    ctx, _ = make_ctx({}, type="nodejs")
    npm = shutil.which("npm")
    tool = fetch(ctx, manager, shutil.which("node"), npm)
    env = {**base_env(), **tool_env(ctx, manager, npm),
           "PATH": f"{os.path.dirname(shutil.which('node'))}:{base_env()['PATH']}"}
    work = tmp_path / "lockgen"
    work.mkdir()
    (work / "package.json").write_text(json.dumps(package))
    if manager.name == "npm":
        lock = "package-lock.json"
        run((*tool.argv, "install", "--package-lock-only", "--ignore-scripts"), work, env)
    elif manager.name == "pnpm":
        lock = "pnpm-lock.yaml"
        run((*tool.argv, "install", "--lockfile-only"), work, env)
    elif manager.berry:
        lock = "yarn.lock"
        (work / "yarn.lock").write_text("")
        run((*tool.argv, "install", "--mode=update-lockfile", "--no-immutable"), work, env)
    else:
        lock = "yarn.lock"
        run((*tool.argv, "install", "--ignore-scripts", "--non-interactive"), work, env)
    text = (work / lock).read_text()
    # The tools write the exact version asked for; widen the range to ^2.0.0
    # in package.json and in the lock alike, so only the lock keeps 2.0.0.
    package = json.loads(json.dumps(package))
    package["dependencies"]["ms"] = "^2.0.0"
    if manager.name == "npm":
        data = json.loads(text)
        data["packages"][""]["dependencies"]["ms"] = "^2.0.0"
        text = json.dumps(data, indent=2)
    elif manager.name == "pnpm":
        text, n = re.subn(r"specifier: 2\.0\.0", "specifier: ^2.0.0", text)
        assert n == 1, text
    elif manager.berry:
        text = text.replace('"ms@npm:2.0.0":', '"ms@npm:^2.0.0":').replace(
            'ms: "npm:2.0.0"', 'ms: "npm:^2.0.0"')
    else:
        text, n = re.subn(r"^ms@2\.0\.0:", "ms@^2.0.0:", text, flags=re.M)
        assert n == 1, text
    assert "2.0.0" in text
    return json.dumps(package), lock, text


CASES = {
    "npm": (Manager("npm", None, None), {}),
    "npm-pinned": (Manager("npm", "10.9.2", None), {"packageManager": "npm@10.9.2"}),
    "yarn1": (Manager("yarn", "1.22.22", None), {}),   # no packageManager: yarn.lock says yarn 1
    "pnpm": (Manager("pnpm", "9.12.0", None), {"packageManager": "pnpm@9.12.0"}),
    "berry": (Manager("yarn", "4.5.0", None), {"packageManager": "yarn@4.5.0"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_lock_honoured_dev_dependencies_for_the_build_only(make_ctx, tmp_path, case):
    manager, extra = CASES[case]
    package = app(scripts={"build": BUILD}, **extra)
    text, lock, lock_text = make_lock(make_ctx, tmp_path, manager, package)
    files = {"package.json": text, lock: lock_text}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    try:
        result = build_service(ctx)
    except BuildError:
        print(lines.text)
        raise
    label = manager.label if manager.version else "npm@"
    assert any(line.startswith("Using node ") and f" and {label}" in line
               for line in lines.lines), lines.text
    modules = ctx.src / "node_modules"
    assert modules.is_dir() and not modules.is_symlink()
    assert json.loads((modules / "ms" / "package.json").read_text())["version"] == "2.0.0"
    assert (ctx.src / "built.txt").read_text() == "2.0.0"        # is-number was there
    assert not os.path.exists(modules / "is-number")               # and is pruned
    assert "Pruning devDependencies" in lines.lines
    assert result.env["NODE_ENV"] == "production"
    # require() from the app finds the pinned ms through the real directory.
    out = subprocess.run(["node", "-p", "require('ms/package.json').version + ' ' + "
                          "require('path').relative(process.cwd(), require.resolve('ms'))"],
                         cwd=ctx.src, capture_output=True, text=True, env=dict(result.env))
    version, where = out.stdout.split()
    assert version == "2.0.0" and where.startswith("node_modules/")   # pnpm: in .pnpm
    assert not any("in place" in line for line in lines.lines), lines.text

    again, lines2 = make_ctx(files, type="nodejs", processes=WORKER)
    assert plan(again) is True
    second = build_service(again)
    assert second.incremental is True
    assert not any(line.startswith("Installing dependencies") for line in lines2.lines)
    assert (again.src / "built.txt").read_text() == "2.0.0"
    assert not os.path.exists(again.src / "node_modules" / "is-number")


@pytest.mark.slow
@pytest.mark.parametrize("declared", ["pnpm@9.12.0", "yarn@1.22.22", "yarn@4.5.0"])
def test_package_manager_without_a_lock(make_ctx, declared):
    package = app(scripts={"build": BUILD}, packageManager=declared)
    ctx, lines = make_ctx({"package.json": json.dumps(package)}, type="nodejs",
                          processes=WORKER)
    build_service(ctx)
    assert any(line.startswith("Installing dependencies with ") and "frozen" not in line
               and "immutable" not in line for line in lines.lines), lines.text
    assert (ctx.src / "built.txt").read_text() == "2.0.0"
    assert not os.path.exists(ctx.src / "node_modules" / "is-number")


@pytest.mark.slow
def test_a_package_manager_version_that_does_not_exist(make_ctx):
    files = {"package.json": json.dumps(app(packageManager="pnpm@0.0.1"))}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == "downloading pnpm@0.0.1 failed (exit 1)"
    assert any("pnpm@0.0.1" in line and "npm error" in line for line in lines.lines), lines.text
    assert not os.path.exists(ctx.cache_dir / "node-tools" / "pnpm-0.0.1")


@pytest.mark.slow
def test_a_cache_on_another_filesystem_is_copied(make_ctx, tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second filesystem at /dev/shm")
    cache_dir = tempfile.mkdtemp(prefix="node-cache-", dir=shm)
    try:
        files = {"package.json": json.dumps(app())}
        ctx, _ = make_ctx(files, type="nodejs", processes=WORKER)
        ctx = dataclasses.replace(ctx, cache_dir=Path(cache_dir))
        build_service(ctx)
        assert json.loads((ctx.src / "node_modules" / "ms" / "package.json").read_text())[
            "version"] == "2.0.0"
        assert os.stat(ctx.src / "node_modules" / "ms" / "index.js").st_nlink == 1
    finally:
        shutil.rmtree(cache_dir)


# corepack's pin of pnpm 9.12.0 (`corepack use pnpm@9.12.0` writes it): the
# sha512 of its tarball on the npm registry.
PNPM_SHA512 = ("4abf725084d7bcbafbd728bfc7bee61f2f791f977fd87542b3579dcb23504d170d46337945e4c6"
               "6485cd12d588a0c0e570ed9c477e7ccdd8507cf05f3f92eaca")


@pytest.mark.slow
def test_package_manager_pinned_by_digest(make_ctx):
    files = {"package.json": json.dumps(app(packageManager=f"pnpm@9.12.0+sha512.{PNPM_SHA512}",
                                            description="pinned"))}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    build_service(ctx)
    assert "Using node " in lines.text and " and pnpm@9.12.0" in lines.text

    wrong = "0" * 128
    files = {"package.json": json.dumps(app(packageManager=f"pnpm@9.12.0+sha512.{wrong}"))}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == ("package.json: packageManager pins pnpm@9.12.0 to sha512 "
                               "0000000000000000..., but the npm registry's pnpm@9.12.0 is "
                               "4abf725084d7bcba...")
    assert not any(line.startswith("Installing") for line in lines.lines)


@pytest.mark.slow
def test_lock_change_is_a_new_install(make_ctx, tmp_path):
    manager, _ = CASES["npm"]
    text, lock, lock_text = make_lock(make_ctx, tmp_path, manager, app())
    ctx, _ = make_ctx({"package.json": text, lock: lock_text}, type="nodejs", processes=WORKER)
    build_service(ctx)
    changed = lock_text.replace('"lockfileVersion"', '"name": "app",\n  "lockfileVersion"', 1)
    again, lines = make_ctx({"package.json": text, lock: changed}, type="nodejs",
                            processes=WORKER)
    assert plan(again) is False
    assert build_service(again).incremental is False
    assert "Installing dependencies with npm ci" in lines.lines


@pytest.mark.slow
def test_heroku_scripts_order_and_dev_dependencies(make_ctx):
    def step(name):
        return f"node -e \"require('fs').appendFileSync('order.txt', '{name} ' + " \
               f"(require('fs').existsSync('node_modules/is-number') ? 'dev' : 'nodev') + '\\n')\""
    scripts = {name: step(name) for name in
               ("heroku-prebuild", "postinstall", "build", "heroku-cleanup")}
    scripts["heroku-postbuild"] = step("heroku-postbuild")
    files = {"package.json": json.dumps(app(scripts=scripts))}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER,
                          environment={"NODE_ENV": "staging"})
    result = build_service(ctx)
    # heroku-postbuild replaces build; cleanup runs after pruning.
    assert (ctx.src / "order.txt").read_text().splitlines() == [
        "heroku-prebuild nodev", "postinstall dev", "heroku-postbuild dev",
        "heroku-cleanup nodev"]
    assert "NODE_ENV" not in result.env      # the service's own NODE_ENV wins


@pytest.mark.slow
def test_npm_config_production_false_keeps_dev_dependencies(make_ctx):
    files = {"package.json": json.dumps(app())}
    keep = {"NPM_CONFIG_PRODUCTION": "false"}   # the pipeline passes the service's environment
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER, environment=keep, env=keep)
    build_service(ctx)
    assert (ctx.src / "node_modules" / "is-number").is_dir()
    assert "devDependencies kept (NPM_CONFIG_PRODUCTION=false)" in lines.lines


@pytest.mark.slow
def test_a_build_writing_into_node_modules_never_reaches_the_cache(make_ctx):
    patch = ("node -e \"require('fs').appendFileSync('node_modules/ms/index.js', "
             "'\\n// patched')\"")
    files = {"package.json": json.dumps(app(scripts={"postinstall": patch},
                                            description="patched"))}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    build_service(ctx)
    assert (ctx.src / "node_modules" / "ms" / "index.js").read_text().count("// patched") == 1
    assert any("The build wrote into node_modules/ms/index.js in place" in line
               for line in lines.lines), lines.text

    # The written entry is gone: the next build installs anew, copies that
    # file, and leaves the new entry as it installed it.
    again, lines2 = make_ctx(files, type="nodejs", processes=WORKER)
    assert build_service(again).incremental is False
    assert (again.src / "node_modules" / "ms" / "index.js").read_text().count("// patched") == 1
    entry = (again.release_dir / ".deps" / "www-node").resolve()
    assert "// patched" not in (entry / "node_modules" / "ms" / "index.js").read_text()
    assert not any("in place" in line for line in lines2.lines), lines2.text
    # The first release kept what its build wrote.
    assert (ctx.src / "node_modules" / "ms" / "index.js").read_text().count("// patched") == 1
    third, _ = make_ctx(files, type="nodejs", processes=WORKER)
    assert build_service(third).incremental is True
    assert (third.src / "node_modules" / "ms" / "index.js").read_text().count("// patched") == 1


@pytest.mark.slow
def test_a_failing_build_that_wrote_is_caught_too(make_ctx):
    patch = "node -e \"require('fs').appendFileSync('node_modules/ms/index.js', '//x')\""
    scripts = {"postinstall": patch, "build": "exit 3"}
    files = {"package.json": json.dumps(app(scripts=scripts, description="fails"))}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == "build script failed (exit 3)"
    assert any(line.startswith("The build wrote into node_modules/ms/index.js in place")
               for line in lines.lines), lines.text
    assert plan(ctx) is False


@pytest.mark.slow
def test_a_postbuild_writing_into_node_modules_is_caught_at_the_next_reuse(make_ctx):
    # The build file's postbuild runs after the nodejs build's own check.
    files = {"package.json": json.dumps(app(description="postbuild-writes"))}
    write = "echo '// written' >> node_modules/ms/index.js"
    ctx, _ = make_ctx(files, type="nodejs", processes=WORKER, postbuild=write)
    build_service(ctx)
    again, lines = make_ctx(files, type="nodejs", processes=WORKER)
    assert build_service(again).incremental is False
    assert ("node_modules/ms/index.js of the cached dependencies changed after they were "
            "installed: installing them anew") in lines.lines
    assert "// written" not in (again.src / "node_modules" / "ms" / "index.js").read_text()
    assert (ctx.src / "node_modules" / "ms" / "index.js").read_text().count("// written") == 1


@pytest.mark.parametrize("files,message", [
    ({"package-lock.json": "{}", "yarn.lock": ""},
     "two lock files: package-lock.json and yarn.lock; keep only the one of the package "
     "manager you use"),
    ({"yarn.lock": "", "pnpm-lock.yaml": ""},
     "two lock files: yarn.lock and pnpm-lock.yaml; keep only the one of the package manager "
     "you use"),
    ({"package.json": json.dumps(app(packageManager="bun@1.1.0"))},
     "package.json: packageManager 'bun@1.1.0' is not a package manager this platform runs: "
     "use npm, yarn or pnpm"),
    ({"package.json": json.dumps(app(packageManager="pnpm"))},
     "package.json: packageManager must be NAME@VERSION, e.g. \"pnpm@9.12.0\" (got 'pnpm')"),
    ({"package.json": json.dumps(app(packageManager="pnpm@9.12.0+md5.00ff"))},
     "package.json: packageManager must be NAME@VERSION, e.g. \"pnpm@9.12.0\" (got "
     "'pnpm@9.12.0+md5.00ff')"),
    ({"package.json": json.dumps(app(packageManager=["yarn"]))},
     "package.json: packageManager must be NAME@VERSION, e.g. \"pnpm@9.12.0\" (got \"['yarn']\")"),
    ({"package.json": json.dumps(app(packageManager="pnpm@9.12.0")), "yarn.lock": ""},
     "package.json: packageManager is pnpm@9.12.0 but the lock file is yarn.lock; remove one "
     "of them"),
    ({"package.json": json.dumps(app(workspaces=["packages/*"]))},
     "package.json: workspaces (a monorepo) are not supported: give the service the approot "
     "of one package, with its own lock file"),
    ({"pnpm-workspace.yaml": "packages:\n  - 'packages/*'\n"},
     "pnpm-workspace.yaml: workspace packages (a monorepo) are not supported: give the "
     "service the approot of one package, with its own lock file"),
    ({"yarn.lock": "__metadata:\n  version: 8\n"},
     "yarn.lock is a Yarn 2+ lock file: name the yarn version in package.json's "
     "packageManager (e.g. \"yarn@4.5.0\")"),
    ({"pnpm-lock.yaml": "lockfileVersion: '3.0'\n"},
     "pnpm-lock.yaml: unknown lockfileVersion: name the pnpm version in package.json's "
     "packageManager (e.g. \"pnpm@9.12.0\")"),
])
def test_refusals(make_ctx, files, message):
    files = {"package.json": json.dumps(app()), **files}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    assert plan(ctx) is False
    with pytest.raises(BuildError) as info:
        build_service(ctx)
    assert str(info.value) == message
    assert not os.path.lexists(ctx.src / "node_modules")
    assert not any(line.startswith(("Installing", "Fetching")) for line in lines.lines)


def test_engines_node_not_installed_warns_and_uses_the_default(make_ctx):
    node = shutil.which("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    version = version.strip().lstrip("v")
    files = {"package.json": json.dumps({"name": "app", "engines": {"node": ">=99 <100"}})}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    build_service(ctx)
    assert (f"Warning: package.json asks for node '>=99 <100' (engines.node), which is not "
            f"installed (installed: {version}); using node {version}") in lines.lines


def test_engines_node_chooses_among_node_interpreters(make_ctx, tmp_path):
    # A second installed node (the same program under another directory, as
    # an operator's /opt/node-XX/bin would be): the matching one is used.
    other = tmp_path / "opt-node" / "bin"
    other.mkdir(parents=True)
    os.symlink(os.path.realpath(shutil.which("node")), other / "node")
    major = subprocess.run(["node", "-p", "process.versions.node.split('.')[0]"],
                           capture_output=True, text=True).stdout.strip()
    files = {"package.json": json.dumps({"name": "app", "engines": {"node": f"{major}.x"}})}
    ctx, lines = make_ctx(files, type="nodejs", processes=WORKER)
    ctx = dataclasses.replace(ctx, node_interpreters=(str(other / "node"),))
    result = build_service(ctx)
    assert not any(line.startswith("Warning") for line in lines.lines), lines.text
    # Same version: the platform's default wins the tie.
    assert any(line.startswith(f"Using node {major}.") and f"({shutil.which('node')})" in line
               for line in lines.lines), lines.text
    assert result.env["PATH"].split(":")[1] == os.path.dirname(shutil.which("node"))


def test_engines_node_takes_the_newest_matching_interpreter(make_ctx, tmp_path):
    # Stand-ins for an operator's other node installs: only `--version` is asked.
    paths = []
    for version in ("18.19.0", "18.20.4", "22.1.0"):
        path = tmp_path / f"node-{version}"
        path.write_text(f"#!/bin/sh\necho v{version}\n")
        path.chmod(0o755)
        paths.append(str(path))
    ctx, _ = make_ctx({}, type="nodejs")
    ctx = dataclasses.replace(ctx, node_interpreters=tuple(paths))
    warnings = []
    chosen = choose(ctx, shutil.which("node"), "^18.19", warnings.append)
    assert (chosen.path, chosen.version, warnings) == (paths[1], "18.20.4", [])
    assert choose(ctx, shutil.which("node"), "22", warnings.append).version == "22.1.0"
    assert choose(ctx, shutil.which("node"), "lts/*", warnings.append).path == shutil.which("node")
    assert warnings[-1].startswith("package.json: engines.node 'lts/*' is not a version range; "
                                   "using node ")
