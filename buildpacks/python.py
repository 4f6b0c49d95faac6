"""The python and python-worker service types: a virtualenv, uv (or pip), gunicorn.

Dependencies (those of the service's one package manager, see
buildpacks.pymanagers; the build file's `requirements`; and gunicorn) go
into a virtualenv in the shared cache, named by the hash of the interpreter,
the manager and its files (the lock), and those extras, so an unchanged
push reuses it without installing anything. Dependencies that point into
the tree itself (`-e .`, local paths) cannot be shared between releases:
that venv is built inside the release instead. Installs run uv on this host
(buildpacks.uvtool), the same pins as pip in about half its time; in a docker
base image, the image's pip (a uv.lock is still exported by the platform's
uv, which the runtime mounts in the build container). A lock is
installed exactly (its whole closure, hashes checked, nothing resolved),
then gunicorn and the extras are resolved with the lock's pins held. After
the install, Django apps get collectstatic (buildpacks.django). This module
never modifies a completed virtualenv.
"""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from dotcloud.errors import BuildError

from . import cache, django, pymanagers, uvtool
from .base import Buildpack, BuildContext, BuildResult, base_env, build_env, prepend_path, \
    user_processes
from .detect import inside, read_text
from .interpreters import python_for
from .steps import check_step

REQUIREMENTS = pymanagers.REQUIREMENTS
SERVER_PACKAGE = "gunicorn"
# What a venv of Python 3.12 or older gets unless the app pins setuptools: the
# version Heroku's buildpack installs there, the last whose pkg_resources
# older gunicorns and many locks of 2019-2023 import (a stdlib venv before
# 3.12 has setuptools too; a bare `--without-pip` venv has none).
SETUPTOOLS = "setuptools==70.3.0"
WSGI_FILE = "wsgi.py"
INCLUDE_RE = re.compile(r"^(?:-r|--requirement|-c|--constraint)\s*=?\s*(\S+)")
LOCAL_RE = re.compile(r"^(?:-e|--editable)\b|^\.{1,2}(?:/|$)|^/|^file:|@\s*file:")
MAX_INCLUDES = 20
DEFAULT_WORKERS = 2
UV_CACHE = "uv-cache"    # under DATA/cache, beside pip's
UV_STALE = "needs to be updated"    # what `uv export --locked` says of a stale lock


def requirement_files(src: Path) -> tuple[list[tuple[str, str]], bool]:
    """Every requirements file reached from requirements.txt, and if any is local.

    Returns ([(relative path, text)], local) where local means a line names
    a path in the tree, so the result cannot be shared between releases.
    """
    found: list[tuple[str, str]] = []
    local = False
    pending = [REQUIREMENTS]
    while pending and len(found) < MAX_INCLUDES:
        rel = pending.pop(0)
        if any(rel == seen for seen, _ in found):
            continue
        text = read_text(src, rel)
        if text is None:
            if rel != REQUIREMENTS:
                raise BuildError(f"{REQUIREMENTS}: included file '{rel}' not found")
            break
        found.append((rel, text))
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            include = INCLUDE_RE.match(line)
            if include:
                target = str(Path(rel).parent / include.group(1))
                if inside(src, target) is None:
                    raise BuildError(f"{rel}: '{include.group(1)}' is outside the repository")
                pending.append(target)
            elif LOCAL_RE.search(line):
                local = True
    return found, local


REQUIREMENT_RE = re.compile(r"(?im)^\s*setuptools\s*(?:[=<>!~;\[@]|$)")
LOCKED_RE = re.compile(r'(?m)^name = "setuptools"$')     # a [[package]] of poetry.lock, uv.lock


def _installs_setuptools(name: str, text: str) -> bool:
    """Whether this file of the app makes setuptools one of its packages (not an extra's)."""
    if name.endswith(".lock") and name != "Pipfile.lock":
        return bool(LOCKED_RE.search(text))
    if name == "Pipfile.lock":
        try:
            return "setuptools" in (json.loads(text).get("default") or {})
        except (ValueError, AttributeError):
            return False
    if name == "pyproject.toml":
        try:
            deps = tomllib.loads(text).get("project", {}).get("dependencies") or []
        except (tomllib.TOMLDecodeError, AttributeError):
            return False
        return any(isinstance(d, str) and REQUIREMENT_RE.match(d) for d in deps)
    if name == "Pipfile":
        return bool(re.search(r"(?m)^\s*[\"']?setuptools[\"']?\s*=", text))
    return bool(REQUIREMENT_RE.search(text))


def _tooling(ctx: BuildContext, manager: pymanagers.Manager) -> list[str]:
    """setuptools for the older Pythons, unless the app installs its own."""
    version = tuple(int(p) for p in python_for(ctx).version.split(".")[:2])
    files = zip(manager.inputs[0::2], manager.inputs[1::2])
    if version > (3, 12) or any(_installs_setuptools(Path(n).name, t) for n, t in files):
        return []
    return [SETUPTOOLS]


def _interpreter_id(ctx: BuildContext) -> str:
    """What the cache key says of the interpreter (a server upgrade rebuilds)."""
    return python_for(ctx).identity


@dataclass(frozen=True)
class PythonBuildpack(Buildpack):
    """python (serves wsgi.py's `application` with gunicorn) and python-worker."""

    worker: bool = False
    # "uv", "pip", or "" to choose (uv on this host, pip in a docker image).
    engine: str = ""

    def _manager(self, ctx: BuildContext) -> pymanagers.Manager:
        manager = pymanagers.detect(ctx.src, build_env(ctx))
        if manager.name == "pip":
            files, local = requirement_files(ctx.src)
            manager = dataclasses.replace(
                manager, local=local, inputs=tuple(p for rel, text in files for p in (rel, text)))
        return manager

    def _entry(self, ctx: BuildContext) -> tuple[cache.Entry | None, pymanagers.Manager]:
        manager = self._manager(ctx)
        if manager.local:
            return None, manager
        extras = sorted(ctx.service.requirements) + [SERVER_PACKAGE] + _tooling(ctx, manager)
        key = cache.content_key(_interpreter_id(ctx), manager.name, "\n".join(extras),
                                *manager.inputs)
        return cache.Entry(ctx.cache_dir / "python", key), manager

    def check(self, ctx: BuildContext) -> None:
        workers = ctx.service.config.get("workers", DEFAULT_WORKERS)
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
            raise BuildError(f"service '{ctx.service.name}': config 'workers' must be an "
                             "integer from 1 to 64")
        python_for(ctx)     # a version asked for but not installed: refused before any hook
        self._manager(ctx)  # two managers, a stale or malformed lock: the same

    def plan(self, ctx: BuildContext) -> bool:
        try:
            entry, _ = self._entry(ctx)
        except BuildError:
            return False
        return entry is not None and entry.complete()

    def build(self, ctx: BuildContext) -> BuildResult:
        ctx.log(python_for(ctx).summary)
        entry, manager = self._entry(ctx)
        venv = entry.path if entry is not None else ctx.release_dir / ".venv" / ctx.service.name
        # Before installing anything: a push with nothing to run fails fast.
        processes, http = self._processes(ctx, venv)
        if entry is None:
            ctx.log(f"{manager.label} installs from the repository itself: "
                    "building a virtualenv for this release only")
            self._install(ctx, venv, manager)
            reused, deps_size = False, cache.tree_size(venv)
        else:
            reused = cache.ensure(
                entry, lambda path: self._install(ctx, path, manager),
                on_wait=lambda: ctx.log("Waiting for another build of the same requirements..."),
                owner=ctx.user)
            cache.record_use(ctx.release_dir, f"{ctx.service.name}-python", entry)
            deps_size = entry.size()
            if reused:
                ctx.log("Requirements unchanged: reusing the virtualenv of an earlier build")
        env = {"PATH": prepend_path(venv / "bin", base_env()["PATH"]),
               "VIRTUAL_ENV": str(venv), "PYTHONUNBUFFERED": "1"}
        django.collectstatic(ctx, venv, build_env(ctx, **env))
        return BuildResult(processes=processes, env=env, http=http, incremental=reused,
                           size_bytes=deps_size)

    def _install(self, ctx: BuildContext, venv: Path, manager: pymanagers.Manager) -> None:
        env = build_env(ctx)
        ctx.log("Creating virtualenv")
        check_step("virtualenv", (python_for(ctx).path, "-m", "venv", "--without-pip",
                                  str(venv)),
                   cwd=ctx.src, env=env, timeout=ctx.timeout, log=ctx.log,
                   executor=ctx.executor)
        engine, install, install_env = self._engine(ctx, venv, env)
        extras = list(ctx.service.requirements) + [SERVER_PACKAGE] + _tooling(ctx, manager)
        # Generated lists live in the venv: the docker runtime mounts it, and
        # they say what it was made from.
        lists = venv / "dotcloud-requirements"
        lists.mkdir()
        ctx.hand_over(lists)     # uv export writes there
        requirements = manager.requirements
        constraints = manager.constraints
        if manager.name == "uv":
            requirements = self._export_uv(ctx, env, lists / "uv-export.txt")
            constraints = pymanagers.pins(requirements)

        def run(what: str, args: list[str]) -> None:
            ctx.log(f"Installing {what} with {engine}")
            check_step(f"{engine} install", (*install, *args), cwd=ctx.src, env=install_env,
                       timeout=ctx.timeout, log=ctx.log, executor=ctx.executor)

        def write(name: str, text: str) -> str:
            (lists / name).write_text(text)
            return str(lists / name)
        texts = "\n".join(manager.inputs[1::2])
        if manager.name == "pip" and "--hash" not in texts:
            run(REQUIREMENTS, ["-r", REQUIREMENTS, *extras])
        elif manager.name == "pip":
            # Hash-checking mode refuses gunicorn beside the file: it goes after.
            run(REQUIREMENTS, ["-r", REQUIREMENTS])
            run(", ".join(extras), ["-c", write("pins.txt", pymanagers.pins(texts)), *extras])
        elif manager.exact:
            run(manager.label, ["--no-deps", "-r", write("locked.txt", requirements or "")])
            run(", ".join(extras), ["-c", write("pins.txt", constraints), *extras])
        elif manager.name:
            pinned = ["-c", write("pins.txt", constraints)] if constraints else []
            run(manager.label, ["-r", write("requirements.txt", requirements or ""),
                                *pinned, *extras])
        else:
            run(", ".join(extras), extras)

    def _export_uv(self, ctx: BuildContext, env: Mapping[str, str], output: Path) -> str:
        """uv.lock's packages as a requirements list; uv refuses a stale lock."""
        ctx.log(f"Exporting {pymanagers.UV_LOCK}")
        # Where the build runs, with the build's interpreter: uv exports nothing
        # without one that satisfies the project's Python, which under the docker
        # runtime only the image may have (the runtime mounts the platform's uv in
        # its build container at the same path).
        stale = []

        def log(line: str) -> None:
            if UV_STALE in line:
                stale.append(line)
            ctx.log(line)
        try:
            check_step(f"{pymanagers.UV_LOCK}: uv export", (
                uvtool.uv_binary(), "export", "--locked", "--format", "requirements-txt",
                "--no-default-groups", "--no-emit-project", "--no-header", "--no-annotate",
                "--quiet",     # else the whole list is echoed into the push as well
                "--python", python_for(ctx).path, "--output-file", str(output)),
                cwd=ctx.src, env={**env, **uvtool.lock_check_env(env, ctx.tool_cache(UV_CACHE))},
                timeout=ctx.timeout, log=log, executor=ctx.executor)
        except BuildError:
            if stale:
                raise BuildError(f"{pymanagers.UV_LOCK} is out of date with "
                                 f"{pymanagers.PYPROJECT}; run 'uv lock' and commit it") from None
            raise
        return output.read_text()

    def _engine(self, ctx: BuildContext, venv: Path,
                env: Mapping[str, str]) -> tuple[str, tuple[str, ...], dict[str, str]]:
        """(name, argv up to the packages, environment) of the installer."""
        target = str(venv / "bin" / "python")
        engine = self.engine or ("uv" if ctx.executor.on_host else "pip")
        if engine == "uv":
            return engine, (uvtool.uv_binary(), "pip", "install", "--python", target), \
                {**env, **uvtool.uv_env(env, ctx.tool_cache(UV_CACHE))}
        python = ctx.executor.python    # runs pip, which installs into the venv's python
        return engine, (
            python, "-m", "pip", "--python", target, "install",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
            "--root-user-action", "ignore", "--cache-dir", str(ctx.tool_cache("pip-cache"))), \
            dict(env)

    def _processes(self, ctx: BuildContext, venv: Path) -> tuple[dict, bool]:
        processes = user_processes(ctx.service)
        if self.worker:
            return processes, False
        if "web" not in processes and (ctx.src / WSGI_FILE).is_file():
            processes = {"web": self.web_argv(ctx, venv), **processes}
        if not processes:
            raise BuildError(f"service '{ctx.service.name}': nothing to run: add a {WSGI_FILE} "
                             "with a WSGI 'application', 'processes' in dotcloud.yml, "
                             "or a Procfile")
        return processes, "web" in processes

    @staticmethod
    def web_argv(ctx: BuildContext, venv: Path) -> tuple[str, ...]:
        workers = ctx.service.config.get("workers", DEFAULT_WORKERS)
        return (str(venv / "bin" / "python"), "-m", "gunicorn",
                "--bind", "127.0.0.1:{port}", "--workers", str(workers),
                "--threads", "4", "--worker-class", "gthread", "--graceful-timeout", "10",
                "--access-logfile", "-", "--chdir", str(ctx.src), "wsgi:application")
