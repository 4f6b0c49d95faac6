"""postgresql and redis: accepted by the parser, not built yet.

Data services need their own persistent data directories and connection
variables, which later work adds; until then a push naming one fails early
with a plain message, before any hook runs. This module never builds.
"""
from __future__ import annotations

from dotcloud.errors import BuildError

from .base import Buildpack, BuildContext, BuildResult


class UnsupportedBuildpack(Buildpack):

    def check(self, ctx: BuildContext) -> None:
        raise BuildError(f"service '{ctx.service.name}': type {ctx.service.type} "
                         "is not supported yet")

    def build(self, ctx: BuildContext) -> BuildResult:
        self.check(ctx)
        raise AssertionError("unreachable")
