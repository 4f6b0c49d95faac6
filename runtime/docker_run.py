"""`run` commands in a container of the release's image: the docker runtime's
(and the swarm manager's) one-off commands.

`launcher(settings, spec, argv, ...)` is how `run` starts one: the instance
launcher (runtime.docker_launcher) with its stdin passed on, a container of
the instance's release image confined exactly as the instance is (the app's
uid, read-only root, private /tmp, no capabilities, no-new-privileges, the
service's limits), its home mounted, the process's directory and
environment. The container carries the data directory's label and no
instance label, so the docker sweep takes it only once it stopped or is
older than a build may be (its SSH session died with the daemon).
`remove(name)` ends it whole, whatever it setsid()ed, on exit, timeout or
hang-up.

It never decides what runs; it only says how.
"""
from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dotcloud.errors import DotcloudError
from runtime import docker_launcher, docker_socket

# Two threads of the SSH daemon may start run commands at the same moment.
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Launch:
    argv: list[str]         # the launcher, then `--`, then the command
    env: dict[str, str]     # the launcher's (it passes it on to the container)
    container: str


def launcher(settings, spec, argv: list[str], *, reason_file: Path) -> Launch:
    """How to run argv in a container of the instance spec's release image."""
    from runtime import docker_engine   # the SDK's module: names and labels only
    if not spec.image:
        raise DotcloudError(f"{spec.app}'s release has no image (it was built for another "
                            "runtime): push again to run commands in it")
    first = min(spec.processes, key=lambda p: p.name)
    name = docker_engine.container_name(settings.data, spec.app, "run", spec.service,
                                        f"{os.getpid()}-{next(_numbers)}")
    user = f"{spec.user[0]}:{spec.user[1]}" if spec.user else docker_engine.user()
    out = [sys.executable, str(Path(docker_launcher.__file__).resolve()),
           "--image", spec.image, "--name", name, "--workdir", first.cwd, "--user", user,
           "--stop-grace", "1", "--scratch", docker_launcher.scratch(settings.data),
           *docker_launcher.limit_options(spec.limits.over(settings.default_limits)),
           "--label", f"{docker_engine.LABEL_DATA}={docker_engine.data_id(settings.data)}",
           "--label", f"dotcloud.app={spec.app}", "--label", f"dotcloud.run={spec.service}",
           "--mount", f"{spec.home}:{spec.home}:rw", "--stdin",
           "--exit-reason-file", str(reason_file)]
    host = os.environ.get("DOCKER_HOST")
    if host:
        out += ["--docker-host", host]      # the engine's, never the app's variable
    return Launch(out + ["--", *argv], dict(spec.env), name)


def remove(name: str) -> None:
    """The container gone with all it runs (a no-op when the launcher removed it)."""
    try:
        docker_socket.Engine.from_env().remove(name)
    except docker_socket.EngineError:
        pass    # the engine is gone: so is what it ran, or the sweep takes it
