"""postgresql and redis: data services, built from nothing but the host's servers.

A data service has no code to build: its buildpack only checks that the
server binary exists and declares the one process that runs it. The process
line holds two placeholders the deployer fills per instance: `{port}` and
`{datadir}`, the service's persistent directory (DATA/services/APP/SERVICE,
outside every release), where the deployer has already put the password,
the redis config and the initialised postgres cluster (hooks/datastores.py).
This module never creates data directories, passwords or databases.
"""
from __future__ import annotations

import glob
import os
import shutil

from dotcloud.errors import BuildError

from .base import Buildpack, BuildContext, BuildResult

PG_GLOB = "/usr/lib/postgresql/*/bin"
# postgres refuses to run as root; as root it runs in a user namespace where
# it is this uid, mapped back to root outside, so the data directory (and the
# root-only directories above it) stay root's and need no chown.
PG_UID = "1000"


def pg_bin(name: str) -> str | None:
    """A postgres program of the newest installed major version, else from PATH."""
    dirs = sorted(glob.glob(PG_GLOB), key=lambda d: int(d.split("/")[-2]) if
                  d.split("/")[-2].isdigit() else 0)
    for d in reversed(dirs):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return shutil.which(name)


def unprivileged(argv: list[str]) -> list[str]:
    """argv run as a non-root user when we are root (postgres insists)."""
    if os.geteuid() != 0:
        return argv
    return ["unshare", "--user", f"--map-user={PG_UID}", f"--map-group={PG_UID}", *argv]


# The runtime stops a process with SIGTERM, which postgres takes as a "smart"
# shutdown that waits for every client to hang up (its backends are in their
# own sessions, out of reach of the group's signal): until the runtime's
# SIGKILL. This wrapper turns it into a fast shutdown (SIGINT): clients are
# disconnected, the data is checkpointed.
PG_FAST_STOP = ('"$@" & pid=$!\n'
                'trap \'kill -INT "$pid"\' TERM INT\n'
                'while :; do wait "$pid"; status=$?; '
                'kill -0 "$pid" 2>/dev/null || exit "$status"; done\n')


class RedisBuildpack(Buildpack):

    def check(self, ctx: BuildContext) -> None:
        if ctx.servers_on_host and shutil.which("redis-server") is None:
            raise BuildError(f"service '{ctx.service.name}': type redis needs redis-server "
                             "on the platform host (apt-get install redis-server)")

    def build(self, ctx: BuildContext) -> BuildResult:
        self.check(ctx)
        ctx.log("Data service: nothing to build (redis-server)")
        argv = (shutil.which("redis-server") or "redis-server", "{datadir}/redis.conf",
                "--port", "{port}")
        return BuildResult(processes={"redis": argv}, http=False)


class PostgresqlBuildpack(Buildpack):

    def check(self, ctx: BuildContext) -> None:
        if ctx.servers_on_host and (pg_bin("postgres") is None or pg_bin("initdb") is None):
            raise BuildError(f"service '{ctx.service.name}': type postgresql needs PostgreSQL "
                             "on the platform host (apt-get install postgresql)")

    def build(self, ctx: BuildContext) -> BuildResult:
        self.check(ctx)
        ctx.log("Data service: nothing to build (PostgreSQL)")
        # TCP on loopback only: no unix socket, whose path length the data
        # directory's depth could exceed.
        argv = [pg_bin("postgres") or "postgres", "-D", "{datadir}/pgdata", "-h", "127.0.0.1",
                "-p", "{port}", "-c", "unix_socket_directories="]
        if ctx.user is None:    # else it runs as the app's user already
            argv = unprivileged(argv)
        return BuildResult(processes={"postgresql": ("/bin/sh", "-c", PG_FAST_STOP, "postgres",
                                                     *argv)}, http=False)
