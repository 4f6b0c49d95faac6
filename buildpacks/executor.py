"""Where build steps run: the interface a build is handed, never chosen here.

An executor runs one step's argument list with a working directory, an
environment and a deadline, handing each output line to a callback, and
names the programs a build uses there (`python` makes virtualenvs,
`tool("npm")`). `identity` is what built dependencies depend on besides
their manifests (the interpreter, the image): it keys the shared cache so
a virtualenv made in one place is never reused in another. `on_host` says
whether steps run on this host (the process runtime) or elsewhere (the
docker runtime's build container), and `host` is this host's executor, for
steps that need the platform's own tools and nothing of the build's
interpreter (none today: uv exports a lock with the build's interpreter,
where the build runs). The executors themselves live in runtime/ (runtime.executor,
runtime.docker_build), which hands one to every build: buildpacks import
nothing of runtime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence


class Executor(Protocol):
    python: str
    identity: str
    on_host: bool

    @property
    def host(self) -> Executor:
        """This host's executor (itself when on_host)."""

    def tool(self, name: str, path: str) -> str | None:
        """How to invoke program `name` given the build's PATH; None when it is missing."""

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None],
            check: Callable[[], None] | None = None) -> int:
        """Run argv; each output line (stdout and stderr merged) to on_line live;
        return the exit status (below 0: killed by that signal). Raises
        TimeoutError past the deadline, OSError when it cannot start, and what
        check() raises (it is called every tenth of a second or so while the
        step runs: buildpacks.disklimit); nothing of the step keeps running
        after any of them."""
