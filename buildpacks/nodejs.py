"""The nodejs service type, built as Heroku's Node.js buildpack does.

The package manager comes from package.json's `packageManager` or the lock
file (nodemanagers.py); the node from `engines.node` among those installed
(nodeinterpreters.py). Dependencies, devDependencies included, are
installed once per (node version, manager@version, package.json without
its scripts, lock, .npmrc/.yarnrc) into the shared cache, beside a copy of
package.json without `scripts` (the app's own scripts need its source and
run below, in approot). The release gets its own `node_modules` of hard
links to that install (nodemodules.py), so an unchanged push installs
nothing and `node_modules/..` is the app. In approot, in this order:
`heroku-prebuild`; node_modules linked (installed first if new); the app's
install scripts (preinstall, install, postinstall, prepare);
`heroku-postbuild` or else `build`; devDependencies pruned;
`heroku-cleanup`; then a check that nothing wrote into the cached files.
Builds and apps run with `NODE_ENV=production` unless the service sets it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dotcloud.errors import BuildError

from . import cache, nodeinterpreters, nodemanagers, nodemodules
from .base import Buildpack, BuildContext, BuildResult, base_env, build_env, user_processes
from .detect import read_text
from .nodeinterpreters import Node
from .nodemanagers import Manager, Tool
from .spec import BuildfileError
from .steps import check_step

PACKAGE = "package.json"
SERVER = "server.js"
KEY_FORMAT = "node-modules-2"     # change when what an entry holds changes
INSTALL_SCRIPTS = ("preinstall", "install", "postinstall", "prepare")
KEEP_DEV = ("NPM_CONFIG_PRODUCTION", "YARN_PRODUCTION")   # "false": Heroku's opt-out of pruning


def _tool(ctx: BuildContext, name: str) -> str:
    path = ctx.executor.tool(name, base_env()["PATH"])
    if not path:
        raise BuildError(f"nodejs services need '{name}' on the server; install Node.js and npm")
    return path


def _manifest(ctx: BuildContext) -> tuple[dict | None, str | None]:
    """(package.json parsed, its text); Nones when absent."""
    try:
        text = read_text(ctx.src, PACKAGE)
    except BuildfileError as e:
        raise BuildError(str(e)) from None
    if text is None:
        return None, None
    try:
        package = json.loads(text)
    except ValueError as e:
        raise BuildError(f"{PACKAGE} is not valid JSON: {e}") from None
    if not isinstance(package, dict):
        raise BuildError(f"{PACKAGE} must be a JSON object")
    return package, text


def _scripts(package: dict) -> dict[str, str]:
    scripts = package.get("scripts")
    if not isinstance(scripts, dict):
        return {}
    return {k: v for k, v in scripts.items() if isinstance(v, str)}


@dataclass(frozen=True)
class _Install:
    """Everything the cached install depends on, and where it goes."""
    node: Node
    npm: str
    manager: Manager
    label: str                       # manager@version, the npm's version when it is node's
    files: tuple[tuple[str, str], ...]   # name, text: package.json without scripts, lock, rc
    entry: cache.Entry


def _paths(*dirs: Path | None) -> str:
    return ":".join([str(d) for d in dirs if d is not None] + [base_env()["PATH"]])


def _npm_version(ctx: BuildContext, node: Node, npm: str) -> str:
    if ctx.executor.on_host:
        # Read, not run: starting npm costs half a second, on every build.
        manifest = Path(os.path.realpath(npm)).parent.parent / PACKAGE
        try:
            data = json.loads(manifest.read_text())
            if data.get("name") == "npm" and isinstance(data.get("version"), str):
                return data["version"]
        except (OSError, ValueError, AttributeError):
            pass
    lines: list[str] = []
    try:
        status = ctx.executor.run((npm, "--version"), cwd=ctx.src,
                                  env={**base_env(), "PATH": _paths(node.bin_dir)},
                                  timeout=60, on_line=lines.append)
    except (OSError, TimeoutError) as e:
        raise BuildError(f"'{npm} --version' failed: {e}") from None
    if status != 0:
        raise BuildError(f"'{npm} --version' failed (exit {status})")
    return "\n".join(lines).strip()


def _prepare(ctx: BuildContext, package: dict, warn) -> _Install:
    manager = nodemanagers.detect(ctx.src, package)
    engines = package.get("engines")
    wanted = engines.get("node") if isinstance(engines, dict) else None
    node = nodeinterpreters.choose(ctx, _tool(ctx, "node"), wanted, warn)
    beside = node.bin_dir / "npm"
    npm = str(beside) if beside.is_file() else _tool(ctx, "npm")
    label = manager.label if manager.version else f"npm@{_npm_version(ctx, node, npm)}"
    bare = {k: v for k, v in package.items() if k != "scripts"}
    files = [(PACKAGE, json.dumps(bare, indent=2))]
    try:
        for name in (manager.lock, *nodemanagers.CONFIGS):
            text = read_text(ctx.src, name) if name else None
            if text is not None:
                files.append((name, text))
    except BuildfileError as e:
        raise BuildError(str(e)) from None
    key = cache.content_key(KEY_FORMAT, node.version, label,
                            *(part for pair in files for part in pair))
    entry = cache.Entry(ctx.cache_dir / "node", key)
    return _Install(node, npm, manager, label, tuple(files), entry)


def _files(paths: list[str]) -> str:
    shown = ", ".join(f"node_modules/{p}" for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


class NodejsBuildpack(Buildpack):

    def check(self, ctx: BuildContext) -> None:
        _tool(ctx, "node")

    def plan(self, ctx: BuildContext) -> bool:
        try:
            package, _ = _manifest(ctx)
            if package is None:
                return False
            return _prepare(ctx, package, lambda _: None).entry.complete()
        except BuildError:
            return False

    def build(self, ctx: BuildContext) -> BuildResult:
        package, _ = _manifest(ctx)
        # Nothing to run fails before anything is installed.
        processes = self._processes(ctx, package or {}, _tool(ctx, "node"), _tool(ctx, "npm"))
        node_env = {} if "NODE_ENV" in ctx.service.environment else {"NODE_ENV": "production"}
        if package is None:
            node = Node(_tool(ctx, "node"), "")
            return BuildResult(processes=processes, http="web" in processes,
                               env={"PATH": _paths(node.bin_dir), **node_env})
        install = _prepare(ctx, package, lambda line: ctx.log(f"Warning: {line}"))
        ctx.log(f"Using node {install.node.version} ({install.node.path}) and {install.label}")
        processes = self._processes(ctx, package, install.node.path, install.npm)
        tool = nodemanagers.fetch(ctx, install.manager, install.node.path, install.npm)
        tool_env = nodemanagers.tool_env(ctx, install.manager, install.npm)
        path = _paths(ctx.src / "node_modules" / ".bin", tool.bin_dir, install.node.bin_dir)
        env = build_env(ctx, **tool_env, PATH=path, **node_env)
        scripts = _scripts(package)
        self._script(ctx, install, tool, env, scripts, "heroku-prebuild")

        reused = self._install(ctx, install, tool, tool_env)
        try:
            for name in INSTALL_SCRIPTS:
                if name in scripts:
                    # --ignore-scripts: each runs once, not again as another's pre/post.
                    ctx.log(f"Running {name} script")
                    check_step(f"{name} script", (install.npm, "run", "--ignore-scripts", name),
                               cwd=ctx.src, env=env, timeout=ctx.timeout, log=ctx.log,
                               executor=ctx.executor)
            build = "heroku-postbuild" if "heroku-postbuild" in scripts else "build"
            self._script(ctx, install, tool, env, scripts, build)
            self._prune(ctx, install, tool, env, package)
            self._script(ctx, install, tool, env, scripts, "heroku-cleanup")
        finally:
            # A failed build may have written too.
            self._check_cache(ctx, install.entry)
        return BuildResult(processes=processes, http="web" in processes, incremental=reused,
                           env={"PATH": path, **node_env})

    @staticmethod
    def _script(ctx: BuildContext, install: _Install, tool: Tool, env: dict, scripts: dict,
                name: str) -> None:
        if name not in scripts:
            return
        # yarn 2+ runs scripts only in a project it installed itself (ours is
        # installed in the cache): npm runs them the same way.
        runner = (install.npm,) if install.manager.berry else tool.argv
        ctx.log(f"Running {name} script")
        check_step(f"{name} script", (*runner, "run", name), cwd=ctx.src, env=env,
                   timeout=ctx.timeout, log=ctx.log, executor=ctx.executor)

    def _install(self, ctx: BuildContext, install: _Install, tool: Tool, tool_env: dict) -> bool:
        """node_modules in approot from the cache, installed there first if needed."""
        target = ctx.src / "node_modules"
        if nodemodules.remove(target):
            ctx.log("node_modules from the repository replaced by the built one")
        for _ in range(3):
            reused = cache.ensure(
                install.entry, lambda path: self._fill(ctx, install, tool, tool_env, path),
                on_wait=lambda: ctx.log("Waiting for another build of the same dependencies..."),
                owner=ctx.user)
            # What ran after an earlier build's own check (the build file's
            # postbuild, postinstall, the app itself) may have written too.
            written = nodemodules.written_in_place(install.entry) if reused else []
            if written:
                ctx.log(f"{_files(written)} of the cached dependencies changed after they were "
                        "installed: installing them anew")
                nodemodules.discard(install.entry, written)
                continue
            if nodemodules.materialise(install.entry, target):
                # Its directories and copies are the build's (prune, build
                # scripts); the linked files stay the sealed entry's.
                ctx.hand_over(target)
                break
            nodemodules.remove(target)   # discarded meanwhile by another build: once more
        else:
            raise BuildError("the cached dependencies keep changing while this build uses them")
        if reused:
            ctx.log("Dependencies unchanged: node_modules linked from an earlier build")
        cache.record_use(ctx.release_dir, f"{ctx.service.name}-node", install.entry)
        return reused

    @staticmethod
    def _fill(ctx: BuildContext, install: _Install, tool: Tool, tool_env: dict,
              path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)     # made for the build's user already
        for name, text in install.files:
            (path / name).write_text(text)
        ctx.hand_over(path)
        args = nodemanagers.install_args(ctx, install.manager)
        strict = [a for a in args[1:2] if a in ("--frozen-lockfile", "--immutable")]
        label = " ".join((install.manager.name, args[0], *strict))
        ctx.log(f"Installing dependencies with {label}")
        # devDependencies are installed whatever NODE_ENV says: the build needs them.
        env = {k: v for k, v in build_env(ctx, **tool_env).items() if k != "NODE_ENV"}
        env["PATH"] = _paths(tool.bin_dir, install.node.bin_dir)
        check_step(label, (*tool.argv, *args), cwd=path, env=env, timeout=ctx.timeout,
                   log=ctx.log, executor=ctx.executor)
        (path / "node_modules").mkdir(exist_ok=True)

    @staticmethod
    def _prune(ctx: BuildContext, install: _Install, tool: Tool, env: dict,
               package: dict) -> None:
        if not package.get("devDependencies"):
            return   # nothing to prune: spare the second a package manager takes to say so
        kept = [name for name in KEEP_DEV if env.get(name, "").lower() == "false"]
        if kept:
            ctx.log(f"devDependencies kept ({kept[0]}=false)")
            return
        args = nodemanagers.prune_args(ctx, install.manager)
        if args is None:
            ctx.log(f"Warning: devDependencies kept: {install.label} prunes them only with its "
                    "workspace-tools plugin")
            return
        ctx.log("Pruning devDependencies")
        check_step("pruning devDependencies", (*tool.argv, *args), cwd=ctx.src, env=env,
                   timeout=ctx.timeout, log=ctx.log, executor=ctx.executor)

    @staticmethod
    def _check_cache(ctx: BuildContext, entry: cache.Entry) -> None:
        written = nodemodules.written_in_place(entry)
        if not written:
            return
        ctx.log(f"The build wrote into {_files(written)} in place: those files are copied, not "
                "linked, from now on, and the cached dependencies are installed anew next time")
        nodemodules.discard(entry, written)

    def _processes(self, ctx: BuildContext, package: dict, node: str, npm: str) -> dict:
        processes = user_processes(ctx.service)
        if "web" not in processes:
            if isinstance(_scripts(package).get("start"), str):
                web = (npm, "start", "--no-update-notifier")
                processes = {"web": web, **processes}
            elif (ctx.src / SERVER).is_file():
                processes = {"web": (node, str(ctx.src / SERVER)), **processes}
        if not processes:
            raise BuildError(f"service '{ctx.service.name}': nothing to run: add a 'start' "
                             f"script to {PACKAGE}, a {SERVER}, 'processes' in dotcloud.yml, "
                             "or a Procfile")
        return processes
