"""The static service type: approot served as files by `buildpacks.staticserve`.

Nothing is built; the declared process is our own static file server,
bound to loopback on the instance's port. Options from `config`:
`max_age` (seconds browsers may cache files without asking again; default
0, so a new push shows at once). This module never starts the server.
"""
from __future__ import annotations

from pathlib import Path

from dotcloud.errors import BuildError

from . import staticserve
from .base import Buildpack, BuildContext, BuildResult

MAX_AGE_LIMIT = 365 * 24 * 3600


class StaticBuildpack(Buildpack):

    def check(self, ctx: BuildContext) -> None:
        max_age = ctx.service.config.get("max_age", 0)
        if not isinstance(max_age, int) or isinstance(max_age, bool) \
                or not 0 <= max_age <= MAX_AGE_LIMIT:
            raise BuildError(f"service '{ctx.service.name}': config 'max_age' must be a "
                             f"number of seconds from 0 to {MAX_AGE_LIMIT}")

    def build(self, ctx: BuildContext) -> BuildResult:
        # Run by file path in isolated mode (-I): neither the app's working
        # directory nor PYTHON* variables can change which code serves it.
        argv = (ctx.executor.python, "-I", str(Path(staticserve.__file__).resolve()),
                "--root", str(ctx.src), "--bind", "127.0.0.1", "--port", "{port}",
                "--max-age", str(ctx.service.config.get("max_age", 0)))
        return BuildResult(processes={"web": argv}, env={}, http=True)
