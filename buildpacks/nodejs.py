"""The nodejs service type: npm ci (or npm install), then npm start or server.js.

node_modules is installed once per (node version, package.json,
package-lock.json) into the shared cache and linked into the release as
`node_modules`, so an unchanged push runs no npm at all. The install runs
beside a copy of package.json without its `scripts`, so the package's own
lifecycle scripts (which may need the source) are not run: use prebuild or
postbuild for build steps. This module never modifies a completed entry.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dotcloud.errors import BuildError

from . import cache
from .base import Buildpack, BuildContext, BuildResult, base_env, build_env, prepend_path, \
    user_processes
from .detect import read_text
from .spec import BuildfileError
from .steps import check_step

PACKAGE = "package.json"
LOCK = "package-lock.json"
SERVER = "server.js"
NPM_FLAGS = ("--no-audit", "--no-fund", "--no-update-notifier")


def _tool(ctx: BuildContext, name: str) -> str:
    path = ctx.executor.tool(name, base_env()["PATH"])
    if not path:
        raise BuildError(f"nodejs services need '{name}' on the server; install Node.js and npm")
    return path


def _node_version(ctx: BuildContext, node: str) -> str:
    lines: list[str] = []
    try:
        status = ctx.executor.run((node, "--version"), cwd=ctx.src, env=base_env(), timeout=30,
                                  on_line=lines.append)
    except (OSError, TimeoutError) as e:
        raise BuildError(f"'{node} --version' failed: {e}") from None
    if status != 0:
        raise BuildError(f"'{node} --version' failed (exit {status})")
    return "\n".join(lines).strip()


def _manifest(ctx: BuildContext) -> tuple[dict | None, str | None, str | None]:
    """(package.json parsed, its text, the lock file's text); Nones when absent."""
    try:
        text = read_text(ctx.src, PACKAGE)
        lock = read_text(ctx.src, LOCK)
    except BuildfileError as e:
        raise BuildError(str(e)) from None
    if text is None:
        return None, None, lock
    try:
        package = json.loads(text)
    except ValueError as e:
        raise BuildError(f"{PACKAGE} is not valid JSON: {e}") from None
    if not isinstance(package, dict):
        raise BuildError(f"{PACKAGE} must be a JSON object")
    return package, text, lock


class NodejsBuildpack(Buildpack):

    @staticmethod
    def _entry(ctx: BuildContext, text: str | None, lock: str | None) -> cache.Entry | None:
        if text is None:
            return None
        key = cache.content_key(_node_version(ctx, _tool(ctx, "node")), text, lock or "")
        return cache.Entry(ctx.cache_dir / "node", key)

    def check(self, ctx: BuildContext) -> None:
        _tool(ctx, "node")

    def plan(self, ctx: BuildContext) -> bool:
        try:
            _, text, lock = _manifest(ctx)
            entry = self._entry(ctx, text, lock)
        except BuildError:
            return False
        return entry is not None and entry.complete()

    def build(self, ctx: BuildContext) -> BuildResult:
        package, text, lock = _manifest(ctx)
        entry = self._entry(ctx, text, lock)
        processes = self._processes(ctx, package or {})  # nothing to run fails before npm
        reused, deps_size = False, 0
        if entry is not None:
            reused = cache.ensure(
                entry, lambda path: self._install(ctx, path, package, lock),
                on_wait=lambda: ctx.log("Waiting for another build of the same dependencies..."))
            if reused:
                ctx.log("Dependencies unchanged: reusing node_modules of an earlier build")
            self._link(ctx, entry.path / "node_modules")
            cache.record_use(ctx.release_dir, f"{ctx.service.name}-node", entry)
            deps_size = entry.size()
        env = {"PATH": prepend_path(ctx.src / "node_modules" / ".bin", base_env()["PATH"])}
        if "NODE_ENV" not in ctx.service.environment:
            env["NODE_ENV"] = "production"
        return BuildResult(processes=processes, env=env, http="web" in processes,
                           incremental=reused, size_bytes=deps_size)

    def _install(self, ctx: BuildContext, path: Path, package: dict, lock: str | None) -> None:
        path.mkdir(parents=True)
        bare = {k: v for k, v in package.items() if k != "scripts"}
        (path / PACKAGE).write_text(json.dumps(bare, indent=2))
        if lock is not None:
            (path / LOCK).write_text(lock)
        command = "ci" if lock is not None else "install"
        ctx.log(f"Installing dependencies with npm {command}")
        check_step(f"npm {command}", (
            _tool(ctx, "npm"), command, *NPM_FLAGS, "--cache", str(ctx.cache_dir / "npm-cache")),
            cwd=path, env=build_env(ctx), timeout=ctx.timeout, log=ctx.log,
            executor=ctx.executor)
        (path / "node_modules").mkdir(exist_ok=True)

    @staticmethod
    def _link(ctx: BuildContext, target: Path) -> None:
        link = ctx.src / "node_modules"
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            ctx.log("node_modules from the repository replaced by the built one")
            shutil.rmtree(link)
        os.symlink(target, link)

    def _processes(self, ctx: BuildContext, package: dict) -> dict:
        processes = user_processes(ctx.service)
        if "web" not in processes:
            scripts = package.get("scripts")
            if isinstance(scripts, dict) and isinstance(scripts.get("start"), str):
                web = (_tool(ctx, "npm"), "start", "--no-update-notifier")
                processes = {"web": web, **processes}
            elif (ctx.src / SERVER).is_file():
                processes = {"web": (_tool(ctx, "node"), str(ctx.src / SERVER)), **processes}
        if not processes:
            raise BuildError(f"service '{ctx.service.name}': nothing to run: add a 'start' "
                             f"script to {PACKAGE}, a {SERVER}, 'processes' in dotcloud.yml, "
                             "or a Procfile")
        return processes
