"""Which node a service builds and runs with: `engines.node`, among those installed.

The candidates are the node on the platform's PATH (the default), the
host's /usr/bin/node, and `node_interpreters` from DATA/config.yml (a
build in a docker image has only the image's node). With
`engines.node` in package.json the newest candidate in that range is
chosen; when none is, the default is used and the build says so, naming
the range asked for and the version used. Nothing is downloaded. This
module only runs `node --version`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dotcloud.errors import BuildError

from . import noderanges
from .base import BuildContext, base_env

HOST_NODE = "/usr/bin/node"


@dataclass(frozen=True)
class Node:
    path: str
    version: str          # "20.20.2", without the v

    @property
    def bin_dir(self) -> Path:
        return Path(self.path).parent


def version_of(ctx: BuildContext, path: str) -> str | None:
    lines: list[str] = []
    try:
        status = ctx.executor.run((path, "--version"), cwd=ctx.src, env=base_env(), timeout=30,
                                  on_line=lines.append)
    except (OSError, TimeoutError):
        return None
    text = "\n".join(lines).strip()
    try:
        noderanges.parse_version(text)
    except ValueError:
        return None
    return text.lstrip("v") if status == 0 else None


def choose(ctx: BuildContext, default: str, wanted: object,
           warn: Callable[[str], None]) -> Node:
    """The node to use for a package.json whose engines.node is `wanted` (or None)."""
    default_version = version_of(ctx, default)
    if default_version is None:
        raise BuildError(f"'{default} --version' failed")
    fallback = Node(default, default_version)
    if wanted is None:
        return fallback
    if not isinstance(wanted, str):
        warn(f"package.json: engines.node must be a string; using node {fallback.version}")
        return fallback
    found = {fallback.path: fallback}
    # Other executors (a docker image) bring their own node, and only that one.
    others = (HOST_NODE, *ctx.node_interpreters) if ctx.executor.on_host else ()
    for path in others:
        if os.path.realpath(path) in {os.path.realpath(p) for p in found}:
            continue
        if os.path.isfile(path) and os.access(path, os.X_OK):
            version = version_of(ctx, path)
            if version is not None:
                found[path] = Node(path, version)
    try:
        matching = [n for n in found.values() if noderanges.matches(n.version, wanted)]
    except ValueError:
        warn(f"package.json: engines.node '{wanted[:60]}' is not a version range; using node "
             f"{fallback.version}")
        return fallback
    if not matching:
        installed = ", ".join(sorted({n.version for n in found.values()},
                                     key=noderanges.parse_version))
        warn(f"package.json asks for node '{wanted[:60]}' (engines.node), which is not installed "
             f"(installed: {installed}); using node {fallback.version}")
        return fallback
    # The newest; on a tie the first found, so the default wins.
    return max(matching, key=lambda n: noderanges.parse_version(n.version))
