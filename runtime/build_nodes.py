"""The swarm's build nodes: where a service build runs under the swarm runtime.

When the swarm has ready, active nodes labelled role=build, a service build
runs on one of them (picked at random, so builds spread) as a swarm task;
otherwise on the manager's engine, as the docker runtime builds, and so when
the task cannot start there (the base image has no python3, the node does
not answer: the reason is logged). `builder(client)` says which node.

The task is one service (`AgentExecutor.start`): one replica of the base
image constrained to that node, restart condition none, on the host
network, with the service's limits, a read-only root (a tmpfs at /tmp, an
anonymous volume at the release directory's and at the dependency cache's
own paths, so every path means what it means on the manager), every
capability dropped but those the sync needs. Its process is
runtime.build_agent, handed over as a swarm config and run by the base
image's python3; the build's token is a swarm secret only the agent (root
in the task) reads, while the steps run as the app's uid. The manager talks
to it at NODE_ADDR:PORT (a port picked from DOTCLOUD_BUILD_AGENT_PORTS).
`close()` removes the service, its secret and configs at the end of the
build whatever happened; `sweep` removes those of a pipeline that died.

Files travel as deltas (runtime.build_agent): before each step what changed
on the manager since the last sync, after it what the step changed there,
each side keeping its copy between steps. The release directory always
goes; of the shared cache only the entries the build uses (named by the
step's argv, working directory or environment, linked from the release's
`.deps`, or being filled by this build), each sent once and then kept in
sync. What comes back lands only under the release and cache directories,
never through a link a step left, never into a cache entry that is complete
here (those are only read), and only what the step removed is removed here:
what another build put in the shared cache meanwhile stays.
"""
from __future__ import annotations

import json
import os
import random
import re
import secrets
import select
import socket
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import docker
from docker.types import ConfigReference, Mount, Resources, RestartPolicy, SecretReference

from buildpacks import cache as depcache
from dotcloud import logs
from dotcloud.resources import Limits, format_memory

from . import build_agent, docker_engine, swarm
from .executor import HOST, shell_tool

ROLE_LABEL = ("role", "build")
# A build service's labels. Not the data directory's own label: the
# instances' sweep (runtime.swarm) would take it for an instance's service.
LABEL_BUILD = "dotcloud.build.data"
LABEL_OWNER = "dotcloud.build.owner"        # HOST:PID of the pipeline that made it
LABEL_SERVICE = "dotcloud.build.service"    # a secret's or config's service
AGENT_FILE = "/dotcloud-build-agent.py"
AGENT_PYTHON = "python3"        # the base image's
TOKEN_NAME = "dotcloud-build-token"
# The steps' capabilities are none; the agent keeps these, to give files the
# manager's owners and modes (sealed cache entries are root's, read-only) and
# to kill what a step left.
AGENT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID",
              "CAP_KILL"]
CONFIG_MAX = 500 * 1024         # the swarm's limit on one config
START_TIMEOUT = 120.0           # a first pull of the base image on a new node included
START_ATTEMPTS = 3              # ports taken on the node
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 600.0           # a put or get of a big tree
AGENT_GRACE = 10.0              # beyond a step's deadline, for the agent's own report


def _ports() -> tuple[int, int]:
    low, _, high = os.environ.get("DOTCLOUD_BUILD_AGENT_PORTS", "31000-32700").partition("-")
    return int(low), int(high or low)


class BuildNodeUnavailable(Exception):
    """The build cannot run on that node; the manager builds instead."""


def build_nodes(client) -> list[swarm.Node]:
    key, value = ROLE_LABEL
    return [n for n in swarm.nodes(client)
            if n.labels.get(key) == value and n.state == "ready"
            and n.availability == "active" and n.addr]


def builder(client) -> swarm.Node | None:
    """The build node of one build (at random, so builds spread), or None:
    the manager builds."""
    try:
        nodes = build_nodes(client)
    except docker_engine.ENGINE_ERRORS:
        return None
    return random.choice(nodes) if nodes else None


def manager_name(client) -> str:
    try:
        return client.info().get("Name", "the manager")
    except docker_engine.ENGINE_ERRORS:
        return "the manager"


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class AgentExecutor:
    """buildpacks.executor's protocol on a build node (module doc): started
    with start(), removed with close()."""

    python = "python3"
    on_host = False
    host = HOST

    def __init__(self, client, node: swarm.Node, *, data: Path, name: str, image: str,
                 image_id: str, user: str, labels: Mapping[str, str], limits: Limits | None,
                 release: Path, cache: Path, registry: str = "", idle: float = 3600.0,
                 readonly: Sequence[Path] = ()):
        self.client = client
        self.node = node
        self.builder = node.hostname
        self.data = data
        self.name = name
        self.image = image
        self.image_id = image_id
        self.identity = f"docker image {image_id}"   # as on the manager: one cache for both
        self.user = user
        # Not the data directory's own label (LABEL_BUILD says whose it is): the
        # instances' sweep would remove the service as an instance's that is gone.
        self.labels = {k: v for k, v in labels.items() if k != docker_engine.LABEL_DATA}
        self.limits = limits
        self.release = os.path.normpath(str(release))
        self.cache = os.path.normpath(str(cache))
        self.registry = registry
        self.idle = idle
        # Host files steps only read (certificates, the platform's uv), where they are here.
        self.readonly = tuple(os.path.normpath(str(p)) for p in readonly
                              if Path(p).is_file() and not self._synced(str(p)))
        self.inputs = _input_dirs(self.readonly)
        self.readonly = tuple(p for p in self.readonly if os.path.dirname(p) in self.inputs
                              or any(p.startswith(d + "/") for d in self.inputs))
        self.token = ""
        self.port = 0
        self.made: list[tuple[str, str]] = []    # ("secret" | "config", id)
        self.service = None
        self.tools: dict[str, str | None] = {}
        self.mine: dict = {}        # the manifest of what the agent was last given
        self.scope: set[str] = set()    # the cache subtrees the agent has
        self.log = logs.get("swarm", node=node.hostname, service=name)

    # -- the task ----------------------------------------------------------

    def start(self) -> None:
        """The agent's service, answering; BuildNodeUnavailable with the reason
        (everything made so far removed) when it cannot be."""
        try:
            self._start()
        except BuildNodeUnavailable:
            self.close()
            raise
        except (*docker_engine.ENGINE_ERRORS, build_agent.Refused) as e:
            self.close()
            raise BuildNodeUnavailable(docker_engine.short(e)) from None

    def _start(self) -> None:
        t0 = time.monotonic()
        self._remove_service()         # left by a killed pipeline of this same release
        image = self._image()
        self.token = secrets.token_urlsafe(32)
        labels = {LABEL_BUILD: docker_engine.data_id(self.data), LABEL_OWNER: owner(),
                  LABEL_SERVICE: self.name}
        secret = self.client.secrets.create(name=f"{self.name}-token", data=self.token.encode(),
                                            labels=labels)
        self.made.append(("secret", secret.id))
        agent = self._config(f"{self.name}-agent", Path(build_agent.__file__).read_bytes(),
                             labels)
        configs = [ConfigReference(agent, f"{self.name}-agent", filename=AGENT_FILE, uid="0",
                                   gid="0", mode=0o444)]
        low, high = _ports()
        for attempt in range(START_ATTEMPTS):
            self.port = random.randint(low, high)
            self._create(image, labels, secret, configs)
            status = self._wait_ready(t0 + START_TIMEOUT)
            if status is None:
                self._send_readonly()
                self.log.info("build_agent_ready", port=self.port,
                              seconds=round(time.monotonic() - t0, 2))
                return
            self._remove_service()
            if status != build_agent.EXIT_PORT_TAKEN:
                break
        raise BuildNodeUnavailable(self.why or "its build agent did not start")

    def _image(self) -> str:
        """The base image as the node pulls it: from the registry when there
        is one (its layers are there after the first build), else by name."""
        if not self.registry:
            return self.image
        tag = self.image_id.split(":")[-1][:16]
        return swarm.publish_image(self.client, self.image_id, f"dotcloud/build-base:{tag}",
                                   self.registry)

    def _config(self, name: str, data: bytes, labels: dict) -> str:
        config = self.client.configs.create(name=name, data=data, labels=labels)
        self.made.append(("config", config.id))
        return config.id

    def _create(self, image: str, labels: dict, secret, configs) -> None:
        uid, _, gid = self.user.partition(":")
        env = {"DOTCLOUD_AGENT_ADDR": self.node.addr, "DOTCLOUD_AGENT_PORT": str(self.port),
               "DOTCLOUD_AGENT_ROOTS": json.dumps([self.release, self.cache]),
               "DOTCLOUD_AGENT_INPUTS": json.dumps(self.inputs),
               "DOTCLOUD_AGENT_USER": f"{uid}:{gid or uid}",
               "DOTCLOUD_AGENT_TOKEN_FILE": f"/run/secrets/{TOKEN_NAME}",
               "DOTCLOUD_AGENT_IDLE": str(int(self.idle)),
               "PYTHONDONTWRITEBYTECODE": "1"}
        self.service = self.client.services.create(
            image, command=[AGENT_PYTHON, AGENT_FILE], name=self.name,
            env=[f"{k}={v}" for k, v in env.items()],
            labels={**labels, **self.labels}, container_labels=dict(self.labels),
            user="0:0", read_only=True, cap_drop=["ALL"], cap_add=AGENT_CAPS, init=True,
            networks=["host"], hostname="{{.Node.Hostname}}",
            constraints=[f"node.id=={self.node.id}"],
            restart_policy=RestartPolicy(condition="none"),
            resources=_resources(self.limits), stop_grace_period=1_000_000_000,
            mounts=[Mount(self.release, None, type="volume"),
                    Mount(self.cache, None, type="volume"),
                    Mount("/tmp", None, type="tmpfs", tmpfs_mode=0o1777),
                    # The image's own files there are copied in first (a new volume's).
                    *(Mount(d, None, type="volume") for d in self.inputs)],
            secrets=[SecretReference(secret.id, secret.name, filename=TOKEN_NAME, uid="0",
                                     gid="0", mode=0o400)],
            configs=configs,
            log_driver="json-file", log_driver_options={"max-size": "1m", "max-file": "1"})

    why = ""

    def _send_readonly(self) -> None:
        """The host files steps read, once, where they are here (links followed)."""
        if not self.readonly:
            return
        with self._connect() as conn:
            conn.settimeout(REPLY_TIMEOUT)
            with conn.makefile("rwb") as f:
                f.write(json.dumps({"op": "put", "token": self.token}).encode() + b"\n")
                for path in self.readonly:
                    with open(path, "rb") as src:
                        st = os.fstat(src.fileno())
                        f.write(json.dumps({"op": "f", "path": path, "mode": st.st_mode & 0o755,
                                            "uid": 0, "gid": 0, "mtime": st.st_mtime_ns,
                                            "size": st.st_size}).encode() + b"\n")
                        build_agent._copy_out(src.fileno(), f, st.st_size)
                f.write(b'{"op": "end"}\n')
                f.flush()
                _checked(build_agent.read_header(f))

    def _synced(self, path: str) -> bool:
        return any(path == r or path.startswith(r + "/") for r in (self.release, self.cache))

    def _wait_ready(self, deadline: float) -> int | None:
        """None once the agent answers; else the task's exit status (-1: it
        never ran), with self.why the task's error."""
        while time.monotonic() < deadline:
            tasks = self.client.api.tasks(filters={"service": self.name})
            for task in tasks:
                status = task.get("Status") or {}
                state = status.get("State", "")
                if state in ("failed", "rejected", "complete", "shutdown", "orphaned"):
                    code = ((status.get("ContainerStatus") or {}).get("ExitCode"))
                    self.why = (f"its build agent's task {state}: "
                                f"{status.get('Err') or status.get('Message') or ''}").strip()
                    if code is not None and code != 0:
                        self.why += f" (exit status {code})"
                    return -1 if code is None else int(code)
                if state == "running":
                    try:
                        reply = self._call({"op": "hello"}, timeout=2.0)
                        if reply.get("ok"):
                            return None
                    except OSError:
                        pass
            time.sleep(0.1)
        self.why = f"its build agent did not answer in {START_TIMEOUT:.0f} s"
        return -1

    def close(self) -> None:
        if self.service is not None and self.token:
            try:
                self._call({"op": "bye"}, timeout=2.0)
            except OSError:
                pass
        self._remove_service()
        for kind, ident in self.made:
            for _ in range(20):
                try:
                    (self.client.secrets if kind == "secret" else self.client.configs) \
                        .get(ident).remove()
                    break
                except docker.errors.NotFound:
                    break
                except docker_engine.ENGINE_ERRORS as e:
                    # In use by a service being removed: a moment.
                    if "in use" not in str(e):
                        self.log.warning("build_agent_leftover", kind=kind, error=str(e))
                        break
                    time.sleep(0.1)
        self.made = []

    def _remove_service(self) -> None:
        self.service = None
        try:
            swarm.remove_service(self.client, self.name)
        except docker_engine.ENGINE_ERRORS as e:
            self.log.warning("build_service_not_removed", error=str(e))

    # -- talking to the agent -----------------------------------------------

    def _connect(self, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
        return socket.create_connection((self.node.addr, self.port), timeout=timeout)

    def _call(self, request: dict, timeout: float = REPLY_TIMEOUT) -> dict:
        with self._connect(min(timeout, CONNECT_TIMEOUT)) as conn:
            conn.settimeout(timeout)
            with conn.makefile("rwb") as f:
                f.write(json.dumps({**request, "token": self.token}).encode() + b"\n")
                f.flush()
                return _checked(build_agent.read_header(f))

    def tool(self, name: str, path: str) -> str | None:
        return shell_tool(self, name, path)

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None],
            check: Callable[[], None] | None = None) -> int:
        if self.service is None:
            raise OSError(f"build node {self.builder}: its build agent is gone")
        deadline = time.monotonic() + timeout
        self._push(argv, cwd, env)
        ok = False
        try:
            code, kills = self._step(argv, cwd, env, timeout, deadline, on_line, check)
            ok = True
        finally:
            try:
                self._pull()
            except (OSError, ValueError) as e:
                if ok:
                    raise OSError(f"build node {self.builder}: the step's files did not come "
                                  f"back: {e}") from None
                self.log.warning("build_files_lost", error=str(e))
        if code != 0 and kills > 0 and self.limits is not None \
                and self.limits.memory_bytes is not None:
            # As on the host (runtime.limits): the reason, not a bare 137.
            raise MemoryError(f"out of memory (limit {format_memory(self.limits.memory_bytes)})")
        return code

    def _step(self, argv, cwd, env, timeout, deadline, on_line, check) -> tuple[int, int]:
        request = {"op": "run", "argv": [str(a) for a in argv], "cwd": str(cwd),
                   "env": {str(k): str(v) for k, v in env.items()}, "timeout": timeout,
                   "token": self.token}
        try:
            conn = self._connect()
        except OSError as e:
            raise OSError(f"build node {self.builder}: its build agent does not answer "
                          f"({e})") from None
        with conn:
            conn.setblocking(False)
            _send_all(conn, json.dumps(request).encode() + b"\n")
            pending = b""
            while True:
                if check is not None:
                    check()         # what it raises closes the connection: the agent kills the step
                now = time.monotonic()
                if now > deadline + AGENT_GRACE:
                    raise TimeoutError(f"{argv[0]} did not finish in time")
                ready, _, _ = select.select([conn], [], [], 0.1)
                if not ready:
                    continue
                try:
                    data = conn.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    raise OSError(f"build node {self.builder}: lost its build agent during "
                                  f"{argv[0]}")
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                for raw in lines:
                    reply = _checked(json.loads(raw), errors=True)
                    if "line" in reply:
                        on_line(reply["line"])
                    elif reply.get("timeout"):
                        raise TimeoutError(f"{argv[0]} did not finish in time")
                    elif "exit" in reply:
                        return int(reply["exit"]), int(reply.get("oom_kills") or 0)

    # -- the files -----------------------------------------------------------

    def _push(self, argv, cwd, env) -> None:
        for text in [*map(str, argv), str(cwd), *map(str, env.values())]:
            for token in re.split(r"[\s:=,]+", text):
                self._want(token)
        for path in depcache.filling():
            self._want(str(path))
        current = build_agent.manifest([self.release])
        for path, entry in current.items():
            if entry[0] == "l" and entry[6].startswith("/"):
                self._want(os.path.normpath(entry[6]))     # a release's .deps link
        for top in self._tops():
            self._ancestors(top, current)
            build_agent.manifest([top], into=current)
        changes, deletions = build_agent.diff(self.mine, current)
        if not changes and not deletions:
            return
        with self._connect() as conn:
            conn.settimeout(REPLY_TIMEOUT)
            with conn.makefile("rwb") as f:
                f.write(json.dumps({"op": "put", "token": self.token}).encode() + b"\n")
                sent = build_agent.write_delta(f, current, changes, deletions)
                _checked(build_agent.read_header(f))
        self.mine = {**current, **sent}     # what the agent has now

    def _pull(self) -> None:
        with self._connect() as conn:
            conn.settimeout(REPLY_TIMEOUT)
            with conn.makefile("rwb") as f:
                f.write(json.dumps({"op": "get", "token": self.token}).encode() + b"\n")
                f.flush()
                _checked(build_agent.read_header(f))
                skipped: list[str] = []

                def skip(path: str) -> bool:
                    if self._sealed(path):
                        skipped.append(path)
                        return True
                    return False
                done = build_agent.apply_delta(f, [self.release, self.cache], skip=skip,
                                               strip_setid=True)
        for path, op in done.items():
            if op == "x":
                self.mine.pop(path, None)
                continue
            entry = build_agent.stat_entry(path)
            if entry is not None:
                self.mine[path] = entry
                self._want(path)
        for path in skipped:
            # The manager's copy goes back at the next step.
            self.mine.pop(path, None)
            self.log.warning("build_node_changed_a_cache_entry", path=path)

    def _want(self, token: str) -> None:
        """Add the cache subtree a path names to what the agent gets."""
        if not (token == self.cache or token.startswith(self.cache + "/")):
            return
        rel = os.path.relpath(os.path.normpath(token), self.cache).split("/")
        if rel == ["."]:
            self.scope.add(self.cache)
            return
        if ".." in rel:
            return
        depth = 3 if rel[0] == "users" else 2     # users/UID/TOOL, KIND/KEY
        self.scope.add(os.path.join(self.cache, *rel[:depth]))

    def _tops(self) -> list[str]:
        tops = sorted(self.scope)
        return [t for t in tops if not any(t != o and t.startswith(o + "/") for o in tops)]

    def _ancestors(self, top: str, into: dict) -> None:
        """The directories from the cache's own down to top's parent."""
        rel = os.path.relpath(top, self.cache)
        if rel == ".":
            return
        path = self.cache
        for part in ["", *rel.split("/")[:-1]]:
            path = os.path.join(path, part) if part else path
            entry = build_agent.stat_entry(path)
            if entry is None or entry[0] != "d":
                return
            into[path] = entry

    def _sealed(self, path: str) -> bool:
        """Under a cache entry that is complete here: only ever read."""
        if not path.startswith(self.cache + "/"):
            return False
        rel = os.path.relpath(path, self.cache).split("/")
        if len(rel) < 2 or rel[0] == "users":
            return False
        return depcache.Entry(Path(self.cache) / rel[0], rel[1]).complete()


def service_name(data: Path, app: str, release: str, service: str) -> str:
    return swarm.service_name(data, f"build-{app}-{release}", service)


def _input_dirs(files: Sequence[str]) -> list[str]:
    """The directories of `files`, none under another (each one volume)."""
    dirs = sorted({os.path.dirname(f) for f in files} - {"/", "/tmp"})
    return [d for d in dirs if not any(d != o and d.startswith(o + "/") for o in dirs)]


def _send_all(conn: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        select.select([], [conn], [], 10.0)
        try:
            sent = conn.send(view)
        except BlockingIOError:
            continue
        view = view[sent:]


def _checked(reply: dict, errors: bool = False) -> dict:
    if not isinstance(reply, dict):
        raise OSError(f"build agent: unexpected answer {reply!r}")
    if "error" in reply:
        if errors and reply.get("errno") is not None:
            raise OSError(int(reply["errno"]), reply["error"])
        raise OSError(f"build agent: {reply['error']}")
    return reply


def _resources(limits: Limits | None) -> Resources | None:
    """The task's limits: the service's, as the manager's build containers get them."""
    if limits is None or (limits.memory_bytes is None and limits.cpus is None
                          and limits.processes is None):
        return None
    resources = Resources(mem_limit=limits.memory_bytes,
                          cpu_limit=None if limits.cpus is None else int(limits.cpus * 1e9))
    if limits.processes is not None:
        resources.setdefault("Limits", {})["Pids"] = limits.processes
    return resources


# -- leftovers -------------------------------------------------------------------


def _alive(owner_label: str) -> bool:
    host, _, pid = owner_label.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True             # another host's pipeline: only its age says
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep(client, data: Path, max_age: float, now: float | None = None) -> list[str]:
    """Remove this data directory's build services whose pipeline is dead or
    that are older than max_age seconds, and secrets and configs of build
    services that are gone. Returns the names removed."""
    now = time.time() if now is None else now
    label = f"{LABEL_BUILD}={docker_engine.data_id(data)}"
    removed = []
    live = set()
    for service in client.services.list(filters={"label": label}):
        labels = (service.attrs.get("Spec") or {}).get("Labels") or {}
        created = docker_engine._created(service.attrs.get("CreatedAt", ""))
        if _alive(labels.get(LABEL_OWNER, "")) and now - created < max_age:
            live.add(service.name)
            continue
        if swarm.remove_service(client, service.name):
            removed.append(service.name)
    for kind in (client.secrets, client.configs):
        for item in kind.list(filters={"label": label}):
            labels = (item.attrs.get("Spec") or {}).get("Labels") or {}
            if labels.get(LABEL_SERVICE) in live:
                continue
            try:
                item.remove()
                removed.append(item.name)
            except docker_engine.ENGINE_ERRORS:
                pass            # still in use by a service being removed: next time
    return removed
