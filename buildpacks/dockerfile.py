"""The dockerfile service type: the Dockerfile in the approot builds the image.

The buildpack itself builds nothing: it checks that the approot has a
Dockerfile and that the build runs for a runtime that runs images (its
executor is not this host's), and hands on the processes the build file
names, if any. The runtime that makes the release's images builds this one
from the Dockerfile and fills in what only the image says: its command (the
`web` process when it EXPOSEs a port or sets PORT, else `worker`), working
directory and environment (runtime.docker_image).
"""
from __future__ import annotations

from dotcloud.errors import BuildError

from .base import Buildpack, BuildContext, BuildResult, user_processes

DOCKERFILE = "Dockerfile"
NEEDS_RUNTIME = "type dockerfile needs the docker or swarm runtime"


class DockerfileBuildpack(Buildpack):

    def check(self, ctx: BuildContext) -> None:
        if ctx.executor.on_host:
            raise BuildError(f"service '{ctx.service.name}': {NEEDS_RUNTIME}")
        path = ctx.src / DOCKERFILE
        if not path.is_file() or path.is_symlink():
            raise BuildError(f"service '{ctx.service.name}': type dockerfile needs a "
                             f"{DOCKERFILE} in its approot ({ctx.service.approot})")

    def build(self, ctx: BuildContext) -> BuildResult:
        processes = user_processes(ctx.service)
        return BuildResult(processes=processes, env={}, http="web" in processes)
