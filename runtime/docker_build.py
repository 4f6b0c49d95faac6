"""Build steps inside a service's base image: the docker runtime's build executor.

(The deployer runs an instance's postinstall through it too.)

`executor_for(settings, app, service, service_type, release_dir)` is a
context manager giving the executor a build uses (buildpacks.executor's
protocol): the host's (runtime.executor) for the process runtime; for the
docker runtime one build container per service build, started at its first
step (a build that reuses everything from the cache needs none) from the
base image on the host network, as the app's own uid (the platform's user
when it is not root: hooks.build hands the release directory to that uid
and seals it afterwards, as under the process runtime), with the release
directory and the dependency cache bind-mounted read-write at the same
paths, so whatever a step writes there is where the release and the
instances expect it. Each step is an exec in that container with its output
streamed line by line; the container is removed at the end whatever
happened. A step past its deadline kills the whole build container (nothing
of it may go on running) and raises TimeoutError. The container has the
limits it is given (a build's: dotcloud.resources.build_limits; a
postinstall's or release command's: the service's), memory without swap,
CPUs and processes, and a step that
fails after the kernel killed one of its processes for the memory limit
raises MemoryError('out of memory (limit 512M)'), as runtime.limits does on
the host.

Under the swarm runtime a build may run on a build node instead, as a
swarm task with its directories sent there and back rather than mounted
(runtime.build_nodes).

This module never decides what a build runs, and never touches a container
that is not its own.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from buildpacks import uvtool
from buildpacks.base import base_env
from buildpacks.executor import Executor
from dotcloud import appusers, filemodes, logs
from dotcloud.errors import BuildError
from dotcloud.resources import Limits, format_memory
from runtime import cgroups, docker_engine
from runtime.executor import HOST, HostExecutor, host_executor, shell_tool
from runtime.shimlog import LineSplitter

KEEPALIVE = ["sleep", "infinity"]
PYTHON_TYPES = ("python", "python-worker")
# stdout and stderr on one pipe inside, as on the host: the engine streams
# two pipes as separate frames, and their lines would lose their order.
MERGED = ["/bin/sh", "-c", 'exec "$@" 2>&1', "sh"]
# A build inherits the platform's certificate settings (buildpacks.base
# passes them through, so builds reach registries behind a TLS-inspecting
# proxy); they name files of this host, mounted read-only where they say.
CERTIFICATE_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                    "PIP_CERT", "NODE_EXTRA_CA_CERTS", "NPM_CONFIG_CAFILE")
EXEC_EXIT_POLL = 0.05
CHECK_EVERY = 0.1
END = object()


class DockerExecutor:
    """Runs steps in one container, started at the first step (mutable: its
    container and tool lookups), so a build that reuses everything from the
    cache costs no container at all. `close()` removes it."""

    python = "python3"
    on_host = False
    builder: str | None = None   # the swarm node it runs on, named in the push
    host = HOST

    def __init__(self, client, image: str, image_id: str, name: str, create: dict,
                 limits: Limits | None = None):
        self.client = client
        self.limits = limits
        self.memory_group: Path | None = None   # its memory cgroup on this host, if found
        self.started_at = 0
        self.image = image
        self.identity = f"docker image {image_id}"
        self.name = name
        self.create = create
        self.user = create["user"]
        self.container = None
        self.tools: dict[str, str | None] = {}

    def _started(self):
        if self.container is None:
            try:
                docker_engine.remove(self.client, self.name)   # left by a killed build
                self.started_at = int(time.time()) - 1     # whole seconds, for its events
                self.container = self.client.containers.run(
                    self.image, KEEPALIVE[1:], entrypoint=KEEPALIVE[:1], name=self.name,
                    detach=True, **self.create)
            except docker_engine.ENGINE_ERRORS as e:
                raise OSError(f"no container from {self.image}: {docker_engine.short(e)}") \
                    from None
            logs.get("docker").info("container_started", container=self.name)
            self.memory_group = _memory_group(self.container)
        return self.container

    def close(self) -> None:
        if self.container is not None:
            self.container = None
            docker_engine.remove(self.client, self.name)

    def tool(self, name: str, path: str) -> str | None:
        return shell_tool(self, name, path)

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None],
            check: Callable[[], None] | None = None) -> int:
        deadline = time.monotonic() + timeout
        api = self.client.api
        container = self._started()
        watch = self.limits is not None and self.limits.memory_bytes is not None
        kills = self._oom_kills() if watch else 0
        try:
            exec_id = api.exec_create(container.id, MERGED + list(argv),
                                      environment=dict(env), workdir=str(cwd),
                                      user=self.user)["Id"]
            stream = api.exec_start(exec_id, stream=True)
        except docker_engine.ENGINE_ERRORS as e:
            raise OSError(f"docker exec in {self.image}: {e}") from None
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_split, args=(stream, lines), daemon=True).start()
        try:
            while (line := _next(lines, deadline, check)) is not END:
                on_line(line)
        except queue.Empty:
            self._kill()
            raise TimeoutError(f"{argv[0]} did not finish in time") from None
        except BaseException:
            self._kill()
            raise
        code = self._exit_code(exec_id, deadline)
        if code != 0 and watch and self._oom_kills() > kills:
            # As on the host (runtime.limits): the reason, not a bare 137.
            raise MemoryError(f"out of memory (limit {format_memory(self.limits.memory_bytes)})")
        return code

    def _oom_kills(self) -> int:
        """How many of the container's processes the kernel killed for its memory limit:
        its cgroup's count when this host has it, else the engine's oom events."""
        if self.memory_group is not None:
            text = _read(self.memory_group / "memory.oom_control") \
                or _read(self.memory_group / "memory.events")
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    return int(value)
        try:
            events = self.client.events(since=self.started_at, until=int(time.time()) + 1,
                                        filters={"container": self.container.id,
                                                 "event": "oom"}, decode=True)
            return sum(1 for _ in events)
        except docker_engine.ENGINE_ERRORS:
            return 0

    def _exit_code(self, exec_id: str, deadline: float) -> int:
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running"):
                return int(info.get("ExitCode") or 0)
            if time.monotonic() > deadline:
                self._kill()
                raise TimeoutError("the step did not finish in time")
            time.sleep(EXEC_EXIT_POLL)

    def _kill(self) -> None:
        try:
            if self.container is not None:
                self.container.kill()
        except docker_engine.ENGINE_ERRORS:
            pass  # already gone: what it ran is gone with it


def _memory_group(container) -> Path | None:
    """The memory cgroup directory of a running container, when this host shows it
    (an engine on this host, cgroups mounted), else None."""
    where = cgroups.hierarchies()
    try:
        container.reload()
        pid = int(container.attrs["State"]["Pid"])
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines() if pid else []
    except (*docker_engine.ENGINE_ERRORS, KeyError, ValueError):
        return None
    if where is None:
        return None
    mounts = dict(where.mounts)
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            if controller in mounts and controller in ("memory", ""):
                group = mounts[controller] / path.lstrip("/")
                return group if group.is_dir() else None
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _limits(limits: Limits | None) -> dict:
    """The build container's limits, as docker flags (no swap beyond the memory)."""
    if limits is None:
        return {}
    options = {}
    if limits.memory_bytes is not None:
        # No swap beyond the limit, as on the host.
        options.update(mem_limit=limits.memory_bytes, memswap_limit=limits.memory_bytes)
    if limits.cpus is not None:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    if limits.processes is not None:
        options["pids_limit"] = limits.processes
    return options


def _certificates() -> list[Path]:
    env = base_env()
    return [Path(env[var]) for var in CERTIFICATE_VARS
            if env.get(var, "").startswith("/") and Path(env[var]).exists()]


def _readonly(service_type: str) -> list[Path]:
    """Host files a build container sees where they are on the host: the
    certificates and, for a python build, the platform's uv, so a uv.lock is
    exported with the image's interpreter (the host may have no Python of the
    version the app asks for, and uv will not export without one)."""
    paths = _certificates()
    if service_type in PYTHON_TYPES:
        try:
            paths.append(Path(uvtool.uv_binary()))
        except BuildError:
            pass    # a uv.lock build says so itself; others need no uv
    return paths


def _volumes(readonly: Sequence[Path], *writable: Path) -> dict:
    volumes = {str(path): {"bind": str(path), "mode": "ro"} for path in readonly}
    for path in writable:
        volumes[str(path)] = {"bind": str(path), "mode": "rw"}
    return volumes


def _next(lines: queue.Queue, deadline: float, check: Callable[[], None] | None):
    """The step's next line, or END; raises queue.Empty past the deadline, and
    what check() raises (called every tenth of a second or so meanwhile)."""
    while True:
        if check is not None:
            check()
        wait = max(0.0, deadline - time.monotonic())
        try:
            return lines.get(timeout=wait if check is None else min(CHECK_EVERY, wait))
        except queue.Empty:
            if time.monotonic() >= deadline:
                raise


def _split(stream, lines: queue.Queue) -> None:
    splitter = LineSplitter()
    try:
        for chunk in stream:
            for line in splitter.feed(chunk):
                lines.put(line)
    except docker_engine.ENGINE_ERRORS as e:
        lines.put(f"[docker] lost the step's output: {e}")
    finally:
        for line in splitter.close():
            lines.put(line)
        lines.put(END)


@contextlib.contextmanager
def executor_for(settings, app: str, service: str, service_type: str, release_dir: Path, *,
                 purpose: str = "build", home: Path | None = None,
                 error: type[Exception] = BuildError,
                 limits: Limits | None = None, image: str | None = None) -> Iterator[Executor]:
    """The executor of one service build under settings.runtime (see the module doc).

    limits: what each step runs under (on the host: a cgroup), the build's own
    for a build (dotcloud.resources.build_limits), the service's for the rest.

    The deployer runs an instance's postinstall the same way (purpose
    "postinstall", its home mounted too, failures raising DeployError), and
    a release command (a dockerfile service's in its own `image`).
    """
    # The swarm runtime builds on a build node when it has some (runtime.build_nodes),
    # else on the manager's engine, as docker does.
    if settings.runtime not in ("docker", "swarm"):
        yield host_executor(settings, app, home=home, limits=limits)
        return
    image = image or docker_engine.base_image(settings, service_type)
    log = logs.get("docker", app=app, service=service, image=image)
    node = builder = None
    try:
        client = docker_engine.connect()
        if settings.runtime == "swarm" and purpose == "build":
            from runtime import build_nodes
            node = build_nodes.builder(client)
            builder = node.hostname if node else build_nodes.manager_name(client)
        image_id = docker_engine.image_id(client, image)
    except docker_engine.EngineError as e:
        raise error(str(e)) from None
    name = docker_engine.container_name(settings.data, app, release_dir.name, purpose, service)
    readonly = _readonly(service_type)
    cache = settings.paths.cache
    cache.mkdir(parents=True, exist_ok=True)
    # Steps run as the app's own uid, as on the host (the paths are the host's,
    # bind-mounted: the same ownership and modes hold inside).
    user = appusers.for_app(settings, app)
    if user is not None and home is not None:
        filemodes.own(home, user.uid, user.gid)
    create = {
        "network_mode": "host",
        "user": f"{user.uid}:{user.gid}" if user is not None else docker_engine.user(),
        "labels": {docker_engine.LABEL_DATA: docker_engine.data_id(settings.data),
                   "dotcloud.app": app, f"dotcloud.{purpose}": service},
        "volumes": _volumes(readonly, release_dir, cache, *([home] if home else [])),
        **_limits(limits)}
    executor = None
    if node is not None:
        # A build node: a swarm task there, the files sent to it and back (runtime.build_nodes).
        agent = build_nodes.AgentExecutor(
            client, node, data=settings.data, image=image, image_id=image_id,
            name=build_nodes.service_name(settings.data, app, release_dir.name, service),
            user=create["user"], labels=create["labels"], limits=limits, release=release_dir,
            cache=cache, registry=settings.registry, readonly=readonly,
            idle=settings.build_timeout + 300)
        try:
            agent.start()
            executor = agent
        except build_nodes.BuildNodeUnavailable as e:
            log.warning("build_node_unusable", node=node.hostname, reason=str(e))
            builder = build_nodes.manager_name(client)
    if executor is None:
        executor = DockerExecutor(client, image, image_id, name, create, limits=limits)
    executor.builder = builder      # the node the push names (None: docker, no swarm)
    try:
        yield executor
    finally:
        try:
            executor.close()
        except docker_engine.ENGINE_ERRORS as e:
            log.warning("container_not_removed", purpose=purpose, container=name, error=str(e))
