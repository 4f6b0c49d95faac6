"""Building one service of a release: checks, prebuild, the type's build, postbuild.

`plan(ctx)` says cheaply whether the build will be incremental;
`build_service(ctx)` does it and returns what to run. Both are re-exported
by `buildpacks` itself, with `run_postinstall`. Failures raise
`dotcloud.errors.BuildError` with a one-line reason after the failing
step's output went through `ctx.log`. This module never deploys or starts
what it builds.
"""
from __future__ import annotations

import dataclasses
import time

from dotcloud import logs
from dotcloud.errors import BuildError, DotcloudError

from .base import BuildContext, BuildResult, build_env
from .cache import tree_size
from .hooks import run_build_hook, run_postinstall
from .registry import buildpack_for

__all__ = ["build_service", "plan", "run_postinstall"]


def plan(ctx: BuildContext) -> bool:
    """True when the dependencies this build needs are already cached complete."""
    return buildpack_for(ctx.service.type).plan(ctx)


def build_service(ctx: BuildContext) -> BuildResult:
    """Build ctx.service in ctx.src; raise BuildError saying which step failed."""
    log = logs.get("buildpacks", app=ctx.app, service=ctx.service.name)
    pack = buildpack_for(ctx.service.type)
    pack.check(ctx)
    started = time.monotonic()
    log.info("build_started", type=ctx.service.type, src=str(ctx.src))
    try:
        run_build_hook(ctx, "prebuild", build_env(ctx))
        result = pack.build(ctx)
        # postbuild sees what was installed: `python manage.py collectstatic`
        # runs the virtualenv's python, `npm run build` finds node_modules/.bin.
        run_build_hook(ctx, "postbuild", build_env(ctx, **result.env))
    except DotcloudError as e:
        log.info("build_failed", reason=str(e), seconds=round(time.monotonic() - started, 3))
        raise
    except OSError as e:
        # A full disk or a permission problem on the server: the user gets
        # one line, the platform log the traceback.
        log.exception("build_crashed")
        raise BuildError(f"build failed on the server: {e.strerror or e}") from e
    result = dataclasses.replace(result, size_bytes=result.size_bytes + tree_size(ctx.src))
    log.info("build_done", incremental=result.incremental, size=result.size_bytes,
             processes=list(result.processes), seconds=round(time.monotonic() - started, 3))
    return result
