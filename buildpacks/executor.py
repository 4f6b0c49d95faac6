"""Where build steps run: on this host (the default), or elsewhere through the same seam.

An executor runs one step's argument list with a working directory, an
environment and a deadline, handing each output line to a callback, and
names the programs a build uses there (`python` makes virtualenvs,
`tool("npm")`). `identity` is what built dependencies depend on besides
their manifests (the interpreter, the image): it keys the shared cache so
a virtualenv made in one place is never reused in another. The host
executor keeps the process runtime exactly as it always was; the docker
runtime's executor (runtime.docker_build) runs the same steps in a
container of the service's base image. This module never decides what to
run.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

from runtime.limits import run_limited

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class Executor(Protocol):
    python: str
    identity: str

    def tool(self, name: str, path: str) -> str | None:
        """How to invoke program `name` given the build's PATH; None when it is missing."""

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None]) -> int:
        """Run argv; each output line (stdout and stderr merged) to on_line live;
        return the exit status (below 0: killed by that signal). Raises
        TimeoutError past the deadline, OSError when it cannot start; nothing of
        the step keeps running after either."""


@dataclass(frozen=True)
class HostExecutor:
    """Steps as child processes of the platform, under runtime.limits."""

    @property
    def python(self) -> str:
        return sys.executable

    @property
    def identity(self) -> str:
        return f"{sys.version}\n{Path(sys.executable).resolve()}"

    def tool(self, name: str, path: str) -> str | None:
        # The host's tools are the platform's: found on its own PATH (node under
        # ~/.nvm too), while the build's PATH holds only system directories.
        return shutil.which(name, path=os.environ.get("PATH") or path or DEFAULT_PATH)

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None]) -> int:
        # Builds get no memory cap, which would break node.
        return run_limited(list(argv), cwd=str(cwd), env=dict(env), timeout=timeout,
                           memory_bytes=None, on_line=on_line)


HOST = HostExecutor()
