"""The custom service type: the user's `buildscript` builds, `processes` run.

The build script is the user's own shell command, run in approot with the
build environment and the build's deadline. The service answers HTTP when
one of its processes is named `web`. This module never runs the processes.
"""
from __future__ import annotations

from dotcloud.errors import BuildError

from .base import Buildpack, BuildContext, BuildResult, build_env, shell, user_processes
from .steps import check_step


class CustomBuildpack(Buildpack):

    def check(self, ctx: BuildContext) -> None:
        if not ctx.service.processes:
            raise BuildError(f"service '{ctx.service.name}': type custom needs 'processes' in "
                             "dotcloud.yml or a Procfile in its approot")

    def build(self, ctx: BuildContext) -> BuildResult:
        if ctx.service.buildscript:
            ctx.log(f"Running buildscript: {ctx.service.buildscript}")
            check_step("buildscript", shell(ctx.service.buildscript), cwd=ctx.src,
                       env=build_env(ctx), timeout=ctx.timeout, log=ctx.log,
                       executor=ctx.executor)
        processes = user_processes(ctx.service)
        return BuildResult(processes=processes, env={}, http="web" in processes)
