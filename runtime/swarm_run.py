"""`run` commands as one-off swarm tasks: the swarm runtime's `run`.

`launcher(settings, spec, argv, ...)` is how `run` starts one:
runtime.swarm_oneoff, which makes a swarm service of one task that is never
restarted, from the release's image in the registry, defined as the
instance's own processes are (runtime.swarm_launcher: the app's uid, the
same confinement and limits, the instance's environment and placement, a
tmpfs as its home, the host network), streams the task's output back and
exits with its exit status. The service carries the data directory's label
and `dotcloud.run`, no instance label: the swarm sweep takes it once its
task ended or it is older than a run may be (its SSH session and launcher
died with -9). `remove(name)` ends it on exit, timeout or hang-up: the
launcher is killed at once, so the service goes from here.

A swarm task has no stdin: what the client sends is dropped, and the
launcher says so in one line.

It never decides what runs; it only says how.
"""
from __future__ import annotations

import itertools
import os
import secrets
import sys
from pathlib import Path

from dotcloud.errors import DotcloudError
from runtime import docker_launcher, docker_socket
from runtime.docker_run import Launch

LOCAL_BINDS = ("127.0.0.1", "localhost")
# Two threads of the SSH daemon may start run commands at the same moment.
_numbers = itertools.count(1)


def launcher(settings, spec, argv: list[str], *, reason_file: Path) -> Launch:
    """How to run argv as a one-off task of the instance spec's release image."""
    # The SDK's modules: names and labels only (the launcher speaks to the swarm).
    from runtime import docker_engine, swarm
    if not spec.image:
        raise DotcloudError(f"{spec.app}'s release has no image (it was built for another "
                            "runtime): push again to run commands in it")
    first = min(spec.processes, key=lambda p: p.name)
    # The pid and a counter tell this daemon's runs apart, the token a later
    # daemon's that got the same pid.
    name = swarm.service_name(settings.data, f"run-{os.getpid()}-{next(_numbers)}-"
                                             f"{secrets.token_hex(3)}", spec.service)
    user = f"{spec.user[0]}:{spec.user[1]}" if spec.user else docker_engine.user()
    out = [sys.executable, str(Path(__file__).resolve().parent / "swarm_oneoff.py"),
           "--docker-host", os.environ.get("DOCKER_HOST", ""),
           "--service", name, "--image", spec.image, "--registry", settings.registry,
           "--push-lock", str(settings.paths.run / "swarm-push.lock"),
           "--workdir", first.cwd, "--user", user, "--stop-grace", "1",
           "--scratch", docker_launcher.scratch(settings.data),
           *docker_launcher.limit_options(spec.limits.over(settings.default_limits)),
           "--label", f"{docker_engine.LABEL_DATA}={docker_engine.data_id(settings.data)}",
           "--label", f"{swarm.LABEL_APP}={spec.app}",
           "--label", f"{swarm.LABEL_RUN}={spec.service}",
           "--label", f"dotcloud.service={spec.service}",
           "--exit-reason-file", str(reason_file)]
    for rule in constraints(settings, spec):
        out += ["--constraint", rule]
    return Launch(out + ["--", *argv], dict(spec.env), name)


def constraints(settings, spec) -> list[str]:
    """Where the task may run: where the instance's may (runtime.swarm_launcher)."""
    rules = [f"node.labels.{k}=={v}" for k, v in sorted(dict(spec.placement).items())]
    node = getattr(spec, "node", None)
    if node:
        rules.append(f"node.id=={node}")
    local = any(k.startswith("DOTCLOUD_") and k.endswith("_HOST") and v in LOCAL_BINDS
                for k, v in spec.env.items())
    if not settings.registry or local:
        # Its image is on the manager alone, or the data servers it uses listen
        # on the manager's loopback.
        rules.append("node.role==manager")
    return rules


def remove(name: str) -> None:
    """The service gone, and with it its task (a no-op when the launcher removed it)."""
    try:
        docker_socket.Engine.from_env().call("DELETE", f"/services/{name}", ok=(200, 204))
    except docker_socket.EngineError:
        pass    # gone already, or the engine is: the sweep takes what is left
