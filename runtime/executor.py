"""The host's build executor: build steps as child processes of the platform.

This is buildpacks.executor's protocol for the process runtime: steps run
under runtime.limits (their whole process group killed at the deadline), the
interpreter is the platform's own, and tools come from the platform's PATH.
The docker runtime's executor lives in runtime.docker_build; the hooks pick
one (runtime.executor.executor_for) and hand it to every build, so
buildpacks never choose where they run.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from buildpacks.base import DEFAULT_PATH
from buildpacks.executor import Executor
from buildpacks.interpreters import own_identity
from dotcloud import appusers, filemodes
from dotcloud.filemodes import closed_above
from dotcloud.resources import Limits
from runtime import apptmp
from runtime.limits import run_limited


def shell_tool(executor, name: str, path: str) -> str | None:
    """Where `name` is on `path` where `executor` runs its steps (a build
    container, a build node's task): `command -v` in its shell, asked once a
    name (`executor.tools` keeps the answers)."""
    if name not in executor.tools:
        lines: list[str] = []
        status = executor.run(("/bin/sh", "-c", f"command -v {shlex.quote(name)}"),
                              cwd=Path("/"), env={"PATH": path}, timeout=60,
                              on_line=lines.append)
        executor.tools[name] = lines[-1].strip() if status == 0 and lines else None
    return executor.tools[name]


@dataclass(frozen=True)
class HostExecutor:
    """Steps as child processes of the platform, under runtime.limits; as
    `user` (uid, gid: the app's own, runtime.privileges) when it is set."""

    user: tuple[int, int] | None = None
    # The step's limits (a build's own, or the service's for its hooks), enforced
    # with a cgroup per step (runtime.cgroups) named under the data directory
    # `data`; None: no cgroup.
    limits: Limits | None = None
    data: Path | None = None
    on_host = True

    @property
    def host(self) -> Executor:
        return self

    @property
    def python(self) -> str:
        return sys.executable

    @property
    def identity(self) -> str:
        return own_identity()

    def tool(self, name: str, path: str) -> str | None:
        # The host's tools are the platform's: found on its own PATH (node under
        # ~/.nvm too), while the build's PATH holds only system directories.
        return shutil.which(name, path=os.environ.get("PATH") or path or DEFAULT_PATH)

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None],
            check: Callable[[], None] | None = None) -> int:
        # No RLIMIT_DATA, which would break node (V8 reserves gigabytes); the
        # step's cgroup caps the memory it really uses.
        try:
            return run_limited(list(argv), cwd=str(cwd), env=dict(env), timeout=timeout,
                               memory_bytes=None, on_line=on_line, check=check, user=self.user,
                               cgroup=(self.data, "step", self.limits) if self.data else None)
        except PermissionError as e:
            # An interpreter under a directory closed to others (pyenv in /root):
            # say which directory, not only "Permission denied".
            closed = closed_above(Path(argv[0])) if self.user and os.path.isabs(argv[0]) else []
            if not closed:
                raise
            raise PermissionError(e.errno, f"{argv[0]} is out of reach of the app's user: "
                                  f"{closed[-1]} is closed to others (chmod o+x "
                                  f"{closed[-1]})") from None


HOST: Executor = HostExecutor()


def host_executor(settings, app: str, *, home: Path | None = None,
                  limits: Limits | None = None) -> Executor:
    """The process runtime's executor of one app's steps: as the app's own
    uid (none when the platform is not root: nothing to drop), under limits."""
    user = appusers.for_app(settings, app)
    if user is None:
        return HostExecutor(limits=limits, data=settings.data) if limits else HOST
    if home is not None:
        filemodes.own(home, user.uid, user.gid)
    return HostExecutor(user=apptmp.user(settings.paths, app, user.uid, user.gid),
                        limits=limits, data=settings.data if limits else None)


@contextlib.contextmanager
def executor_for(settings, app: str, service: str, service_type: str, release_dir: Path,
                 **options) -> Iterator[Executor]:
    """runtime.docker_build.executor_for, whose module (and the docker SDK, 0.4 s
    to import) is loaded only under a runtime that builds in containers: every
    push on the process runtime paid that import before its build started."""
    if settings.runtime in ("docker", "swarm"):
        from runtime import docker_build
        with docker_build.executor_for(settings, app, service, service_type, release_dir,
                                       **options) as executor:
            yield executor
        return
    yield host_executor(settings, app, home=options.get("home"), limits=options.get("limits"))
