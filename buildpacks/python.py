"""The python and python-worker service types: a virtualenv, pip, gunicorn.

Dependencies (requirements.txt, the build file's `requirements`, and
gunicorn) go into a virtualenv in the shared cache, named by the hash of the
interpreter and those inputs, so an unchanged push reuses it without running
pip. A requirements file that points into the tree itself (`-e .`, local
paths) cannot be shared between releases: that venv is built inside the
release instead. This module never modifies a completed virtualenv.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dotcloud.errors import BuildError

from . import cache
from .base import Buildpack, BuildContext, BuildResult, base_env, build_env, prepend_path, \
    user_processes
from .detect import inside, read_text
from .executor import HOST, Executor
from .interpreters import python_for
from .steps import check_step

REQUIREMENTS = "requirements.txt"
SERVER_PACKAGE = "gunicorn"
WSGI_FILE = "wsgi.py"
INCLUDE_RE = re.compile(r"^(?:-r|--requirement|-c|--constraint)\s*=?\s*(\S+)")
LOCAL_RE = re.compile(r"^(?:-e|--editable)\b|^\.{1,2}(?:/|$)|^/|^file:|@\s*file:")
MAX_INCLUDES = 20
DEFAULT_WORKERS = 2


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


def _interpreter_id(executor: Executor = HOST) -> str:
    return executor.identity


@dataclass(frozen=True)
class PythonBuildpack(Buildpack):
    """python (serves wsgi.py's `application` with gunicorn) and python-worker."""

    worker: bool = False

    def _entry(self, ctx: BuildContext) -> tuple[cache.Entry | None, bool]:
        files, local = requirement_files(ctx.src)
        if local:
            return None, bool(files)
        extras = sorted(ctx.service.requirements) + [SERVER_PACKAGE]
        key = cache.content_key(python_for(ctx).identity, "\n".join(extras),
                                *(part for rel, text in files for part in (rel, text)))
        return cache.Entry(ctx.cache_dir / "python", key), bool(files)

    def check(self, ctx: BuildContext) -> None:
        workers = ctx.service.config.get("workers", DEFAULT_WORKERS)
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
            raise BuildError(f"service '{ctx.service.name}': config 'workers' must be an "
                             "integer from 1 to 64")
        python_for(ctx)     # a version asked for but not installed: refused before any hook

    def plan(self, ctx: BuildContext) -> bool:
        try:
            entry, _ = self._entry(ctx)
        except BuildError:
            return False
        return entry is not None and entry.complete()

    def build(self, ctx: BuildContext) -> BuildResult:
        ctx.log(python_for(ctx).summary)
        entry, has_file = self._entry(ctx)
        venv = entry.path if entry is not None else ctx.release_dir / ".venv" / ctx.service.name
        # Before installing anything: a push with nothing to run fails fast.
        processes, http = self._processes(ctx, venv)
        if entry is None:
            ctx.log(f"{REQUIREMENTS} installs from the repository itself: "
                    "building a virtualenv for this release only")
            self._install(ctx, venv, has_file)
            reused, deps_size = False, cache.tree_size(venv)
        else:
            reused = cache.ensure(
                entry, lambda path: self._install(ctx, path, has_file),
                on_wait=lambda: ctx.log("Waiting for another build of the same requirements..."))
            cache.record_use(ctx.release_dir, f"{ctx.service.name}-python", entry)
            deps_size = entry.size()
            if reused:
                ctx.log("Requirements unchanged: reusing the virtualenv of an earlier build")
        env = {"PATH": prepend_path(venv / "bin", base_env()["PATH"]),
               "VIRTUAL_ENV": str(venv), "PYTHONUNBUFFERED": "1"}
        return BuildResult(processes=processes, env=env, http=http, incremental=reused,
                           size_bytes=deps_size)

    def _install(self, ctx: BuildContext, venv: Path, has_file: bool) -> None:
        env = build_env(ctx)
        python = ctx.executor.python    # runs pip, which installs into the venv's python
        ctx.log("Creating virtualenv")
        check_step("virtualenv", (python_for(ctx).path, "-m", "venv", "--without-pip",
                                  str(venv)),
                   cwd=ctx.src, env=env, timeout=ctx.timeout, log=ctx.log,
                   executor=ctx.executor)
        args = ["-r", REQUIREMENTS] if has_file else []
        args += list(ctx.service.requirements) + [SERVER_PACKAGE]
        ctx.log("Installing requirements with pip")
        check_step("pip install", (
            python, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
            "--root-user-action", "ignore", "--cache-dir", str(ctx.cache_dir / "pip-cache"),
            *args), cwd=ctx.src, env=env, timeout=ctx.timeout, log=ctx.log,
            executor=ctx.executor)

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
