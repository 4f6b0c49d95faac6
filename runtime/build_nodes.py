"""The swarm's build nodes: where a service build runs under the swarm runtime.

When the swarm has ready, active nodes labelled role=build, a build runs in a
build container on one of them (runtime.docker_build's executor, on that
node's engine, reached at NODE_ADDR:ENGINE_PORT); otherwise on the manager's
engine, as the docker runtime builds, and so when no build node's engine
answers. `builder(client)` says which, with a client of that engine.

A build node is another host: nothing of the manager can be bind-mounted
there. The directories a step may write (the release, the dependency cache)
travel as tar archives instead, whole: the container's copy is replaced with
the manager's before each step, and the manager's with the container's after
it (files the step removed are removed here too), so the code a build runs
between steps on the manager sees what the steps did, as with bind mounts.
Files the build only reads (certificates) go in once, at the container's start.
What comes back is extracted where it was and never through a link a step
left (the steps run the app's code). Both directories go whole at every
step: the cost grows with the shared cache (README, "Builds").
"""
from __future__ import annotations

import io
import os
import random
import shutil
import tarfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

from dotcloud import logs

from . import docker_engine, swarm
from .docker_build import DockerExecutor

ROLE_LABEL = ("role", "build")
# The port a build node's engine listens on for the manager: plain tcp, no TLS
# yet, so an operator opens it to the manager alone on a private network (README).
ENGINE_PORT = int(os.environ.get("DOTCLOUD_BUILD_ENGINE_PORT", "2375"))


def build_nodes(client) -> list[swarm.Node]:
    key, value = ROLE_LABEL
    return [n for n in swarm.nodes(client)
            if n.labels.get(key) == value and n.state == "ready"
            and n.availability == "active" and n.addr]


def builder(client) -> tuple[str, object | None]:
    """(the builder's hostname, a client of its engine) for one build: a build
    node's (picked at random, so builds spread), or the manager's own (hostname,
    None: the caller's client) when there is none or none answers."""
    try:
        nodes = build_nodes(client)
    except docker_engine.ENGINE_ERRORS:
        nodes = []
    random.shuffle(nodes)
    for node in nodes:
        try:
            remote = docker_engine.client_of(f"tcp://{node.addr}:{ENGINE_PORT}")
        except docker_engine.EngineError as e:
            logs.get("swarm").warning("build_node_unreachable", node=node.hostname, error=str(e))
            continue
        return node.hostname, remote
    try:
        return client.info().get("Name", "the manager"), None
    except docker_engine.ENGINE_ERRORS:
        return "the manager", None


class NodeExecutor(DockerExecutor):
    """DockerExecutor on another host's engine: `synced` directories copied in
    before each step and back after it, `readonly` files in once (module doc)."""

    def __init__(self, *args, synced: Sequence[Path], readonly: Sequence[Path], **kwargs):
        super().__init__(*args, **kwargs)
        self.synced = tuple(Path(p) for p in synced)
        self.readonly = tuple(Path(p) for p in readonly)
        self.sent: set[str] = set()     # the paths the last step was given

    def _started(self):
        fresh = self.container is None
        container = super()._started()
        if fresh and self.readonly:
            self._put(container, self.readonly)
        return container

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None],
            check: Callable[[], None] | None = None) -> int:
        container = self._started()
        self._replace(container)
        try:
            return super().run(argv, cwd=cwd, env=env, timeout=timeout, on_line=on_line,
                               check=check)
        finally:
            if self.container is not None:
                self._fetch(container)

    def _replace(self, container) -> None:
        # What the manager removed between steps must not come back after the next.
        code, out = container.exec_run(["rm", "-rf", "--", *map(str, self.synced)], user="0:0")
        if code != 0:
            raise OSError(f"build node: cannot clear the build's directories: {out[-200:]!r}")
        self.sent = self._put(container, [p for p in self.synced if p.exists()])

    def _put(self, container, paths: Sequence[Path]) -> set[str]:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in paths:
                tar.add(str(path), arcname=str(path).lstrip("/"))
            sent = {"/" + m.name for m in tar.getmembers()}
        if paths and not container.put_archive("/", buf.getvalue()):
            raise OSError(f"build node: the engine refused the files of {paths[0]}")
        return sent

    def _fetch(self, container) -> None:
        got: set[str] = set()
        for path in self.synced:
            try:
                chunks, _ = container.get_archive(str(path))
            except docker_engine.ENGINE_ERRORS:
                continue                    # the step removed it, or never made it
            with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
                for member in tar:          # its top entry is the directory's own name
                    got.add(_extract(tar, member, path))
        # Only what the step removed: what another build (of another app) put in
        # the shared cache meanwhile is not the step's to remove.
        for name in sorted(self.sent - got, reverse=True):
            if os.path.lexists(name):
                _remove(name)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, top: Path) -> str:
    """Extract one member of the archive of `top` where it was on the manager,
    never through a symlink (a step may leave one where a directory was):
    its path as a string."""
    base = os.path.realpath(top.parent)
    target = os.path.join(str(top.parent), member.name)
    inside = os.path.normpath(os.path.join(base, member.name))
    if not (inside + "/").startswith(os.path.join(base, top.name) + "/") \
            or os.path.realpath(os.path.dirname(target)) != os.path.dirname(inside):
        raise OSError(f"build node: {member.name} is not under {top}")
    # Nothing is written through what is there: a file may be a hard link of
    # a cached one, a link where the step made a directory may point anywhere.
    if os.path.lexists(target) and not (member.isdir() and os.path.isdir(target)
                                        and not os.path.islink(target)):
        _remove(target)
    tar.extract(member, str(top.parent), numeric_owner=True)
    return target


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
