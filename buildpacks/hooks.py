"""The user's own hooks: prebuild and postbuild commands, the postinstall file.

prebuild/postbuild are shell commands from the build file, run in the
service's approot during the build (failure fails the build);
postinstall is an executable file in approot, run at deploy time before
launch (failure fails the deploy). Each has a deadline and its output goes
to the log live. This module never decides when a hook runs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

from dotcloud.errors import DeployError

from .base import BuildContext, build_env, shell
from .executor import Executor
from .steps import check_step

POSTINSTALL = "postinstall"


def run_build_hook(ctx: BuildContext, which: str, env: Mapping[str, str] | None = None) -> bool:
    """Run the service's `prebuild` or `postbuild` command; True if there was one."""
    command = getattr(ctx.service, which)
    if not command:
        return False
    ctx.log(f"Running {which}: {command}")
    check_step(which, shell(command), cwd=ctx.src,
               env=env if env is not None else build_env(ctx),
               timeout=ctx.timeout, log=ctx.log, executor=ctx.executor)
    return True


def run_postinstall(src: Path, env: Mapping[str, str], log: Callable[[str], None], *,
                    executor: Executor, timeout: float = 600) -> bool:
    """Run src/postinstall if it is an executable file; True if it ran.

    Raises DeployError("postinstall failed (exit N)") or
    DeployError("postinstall timed out after 600s").
    """
    path = Path(src) / POSTINSTALL
    if not path.is_file():
        return False
    if not os.access(path, os.X_OK):
        log("postinstall is not executable (chmod +x postinstall and push again); skipped")
        return False
    check_step(POSTINSTALL, (str(path),), cwd=Path(src), env=env, timeout=timeout, log=log,
               error=DeployError, executor=executor)
    return True
