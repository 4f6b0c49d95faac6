"""Django's collectstatic at the end of a python build, as Heroku's python buildpack runs it.

When the tree has a manage.py (in approot, else the shallowest one at most
3 directories down, as Heroku looks) and Django is installed in the
service's virtualenv, `python manage.py collectstatic --noinput` runs in
approot with the release's environment (PYTHONPATH `.` unless set), right
after the install and before postbuild. It runs on every build, cached
dependencies or not: the static files come from the pushed tree.

Skipped, with a line saying why, when `DISABLE_COLLECTSTATIC` is set to
anything but 0 in the build file's environment or the app's variables, as
on Heroku; and when the settings have no STATIC_ROOT, which Django reports
as an ImproperlyConfigured naming STATIC_ROOT (an app serving no static
files has none to collect; Heroku fails that build, the SPEC skips it). Any
other failure fails the build, with collectstatic's output shown. The
output is held until the command ends, so that a skip shows no traceback.
This module never changes the virtualenv.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from dotcloud.errors import BuildError

from .base import BuildContext
from .steps import StepOutput, describe_status, run_step

MANAGE = "manage.py"
MAX_DEPTH = 3
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", "staticfiles"})
DISABLE = "DISABLE_COLLECTSTATIC"
NO_STATIC_ROOT = ("ImproperlyConfigured", "STATIC_ROOT")


def manage_file(src: Path) -> str | None:
    """manage.py's path relative to src: the shallowest, then the first by name."""
    level = [Path(".")]
    for _ in range(MAX_DEPTH):
        for directory in level:
            candidate = src / directory / MANAGE
            if candidate.is_file() and not candidate.is_symlink():
                return str(directory / MANAGE)
        following = []
        for directory in level:
            try:
                entries = sorted(os.scandir(src / directory), key=lambda e: e.name)
            except OSError:
                continue
            following += [directory / e.name for e in entries
                          if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                          and e.name not in SKIP_DIRS]
        level = following
    return None


def django_installed(venv: Path) -> bool:
    return any(venv.glob("lib/python*/site-packages/django/__init__.py"))


def collectstatic(ctx: BuildContext, venv: Path, env: Mapping[str, str]) -> None:
    """Run collectstatic when this is a Django app; BuildError when it fails."""
    manage = manage_file(ctx.src)
    if manage is None or not django_installed(venv):
        return
    if env.get(DISABLE, "0") not in ("", "0"):
        ctx.log(f"Skipping Django collectstatic: {DISABLE} is set")
        return
    ctx.log(f"$ python {manage} collectstatic --noinput")
    lines: list[str] = []
    argv = (str(venv / "bin" / "python"), manage, "collectstatic", "--noinput", "--traceback")
    step_env = {"PYTHONPATH": ".", **env}
    try:
        status = run_step(argv, cwd=ctx.src, env=step_env, timeout=ctx.timeout,
                          on_line=lines.append, executor=ctx.executor)
    except TimeoutError:
        _show(ctx, lines)
        raise BuildError(f"collectstatic timed out after {ctx.timeout:g}s") from None
    except OSError as e:
        raise BuildError(f"collectstatic could not start: {e.strerror or e}") from None
    if status != 0 and any(all(word in line for word in NO_STATIC_ROOT) for line in lines):
        ctx.log("Skipping Django collectstatic: the settings have no STATIC_ROOT")
        return
    _show(ctx, lines)
    if status != 0:
        raise BuildError(f"collectstatic failed ({describe_status(status)}); its output is "
                         f"above (set {DISABLE}=1 to skip it)")


def _show(ctx: BuildContext, lines: list[str]) -> None:
    output = StepOutput(ctx.log)
    for line in lines:
        output(line)
    output.show_tail()
