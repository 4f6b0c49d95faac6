"""What every service type shares: the build's inputs and outputs, and helpers.

`BuildContext` is what the pipeline hands a build; `BuildResult` is what it
gets back: the processes to run (argv tuples; the runtime replaces the
literal `{port}` in any item with the instance's port and runs them with
the working directory `ctx.src`), runtime environment additions, and whether
the service answers HTTP (its `web` process, on $PORT). A buildpack never
starts the processes it declares and never touches another release.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

from dotcloud.filemodes import own_tree

from .executor import Executor
from .spec import ServiceSpec

# The PATH of every build step and instance ends with these system
# directories, after the release's own bin directories and the chosen
# interpreter's, and holds nothing of the operator's PATH (pyenv shims,
# ~/.cargo/bin): what an app runs must not depend on who started the
# platform. No sbin, as on Heroku: apps run unprivileged. The platform finds
# its own tools (node, npm) on its own PATH (executor.tool) and runs them by
# absolute path.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# What a build inherits from the platform's own environment: enough to reach
# package registries (proxies, certificates, pip/npm settings), nothing else
# of the server's.
PASSTHROUGH = frozenset({"HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME",
                         "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"})
PASSTHROUGH_PREFIXES = ("LC_", "PIP_", "NPM_CONFIG_", "SSL_CERT_")


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class BuildContext:
    app: str
    service: ServiceSpec
    src: Path            # the service's approot inside the new release; writable
    release_dir: Path
    cache_dir: Path      # DATA/cache, shared by every app and release
    env: Mapping[str, str]
    log: Callable[[str], None]
    # Where steps run and with which interpreter and tools: the runtime's
    # choice (runtime.docker_build.executor_for), handed in by the caller.
    executor: Executor
    timeout: float = 600
    # Extra interpreters the operator lists in DATA/config.yml (paths).
    python_interpreters: tuple[str, ...] = ()
    node_interpreters: tuple[str, ...] = ()
    # The Python version of services that ask for none (config.yml); empty:
    # the platform's own interpreter (buildpacks.interpreters).
    python_version: str = ""
    # (uid, gid) the steps run as (the app's own), None: the platform's. What
    # the build itself writes where steps write next is handed to it (`hand_over`).
    user: tuple[int, int] | None = None
    # Download caches of the package managers (npm's, uv's...): the app's own
    # when it has a user (an app must not plant files another app installs),
    # else cache_dir.
    tool_cache_dir: Path | None = None
    # Whether data services run this host's servers (postgres, redis-server);
    # False: the runtime runs them elsewhere, from its own image.
    servers_on_host: bool = True

    def tool_cache(self, name: str) -> Path:
        return Path(self.tool_cache_dir or self.cache_dir) / name

    def hand_over(self, path: Path) -> None:
        """What the build wrote at path (a tree) becomes the steps' user's."""
        if self.user is not None:
            own_tree(path, *self.user)

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", Path(self.src))
        object.__setattr__(self, "release_dir", Path(self.release_dir))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        object.__setattr__(self, "env", _frozen(
            {str(k): str(v) for k, v in self.env.items()}))


@dataclass(frozen=True)
class BuildResult:
    processes: Mapping[str, tuple[str, ...]]
    env: Mapping[str, str] = field(default_factory=dict)
    http: bool = False
    incremental: bool = False
    # Bytes of the built src tree plus the dependencies it runs with (the
    # shared cache entry counts in full, even when other releases share it).
    size_bytes: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "processes", MappingProxyType(
            {name: tuple(argv) for name, argv in self.processes.items()}))
        object.__setattr__(self, "env", _frozen(self.env))


class Buildpack:
    """One service type. Subclasses implement `build`; the rest has defaults."""

    def check(self, ctx: BuildContext) -> None:
        """Refuse early, before any hook runs, what this type cannot build."""

    def plan(self, ctx: BuildContext) -> bool:
        """True when the build will reuse complete cached dependencies."""
        return False

    def build(self, ctx: BuildContext) -> BuildResult:
        raise NotImplementedError


def _passes(name: str) -> bool:
    return (name in PASSTHROUGH or name.startswith(PASSTHROUGH_PREFIXES)
            or name.lower() in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"))


def base_env() -> dict[str, str]:
    """The platform's environment, filtered to what builds and apps need, with
    the system directories for PATH."""
    env = {k: v for k, v in os.environ.items() if _passes(k)}
    env["PATH"] = DEFAULT_PATH
    return env


def build_env(ctx: BuildContext, **extra: str) -> dict[str, str]:
    """The environment of a build step: platform basics, then the service's own."""
    env = base_env()
    env.update(ctx.env)
    env.update(extra)
    return env


def shell(command: str) -> tuple[str, ...]:
    """A user's own command line from their build file or Procfile."""
    return ("/bin/sh", "-c", command)


def user_processes(spec: ServiceSpec) -> dict[str, tuple[str, ...]]:
    return {name: shell(command) for name, command in spec.processes.items()}


def prepend_path(directory: Path, path: str) -> str:
    return f"{directory}:{path}" if path else str(directory)
