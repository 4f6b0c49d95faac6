"""One instance process as a swarm service: what the shim runs under the swarm runtime.

`wrap()` turns each process of an instance into `python swarm_launcher.py
--service NAME --image IMG ... -- ARGV`. Run by the shim like any process,
on the manager, the launcher pushes the release's image to the registry (a
push of layers the registry has is quick), then creates the service: one
replica of the image on the host network with the instance's port, as the
app's user, in the process's working directory, with its environment (the
launcher's own, which the shim set from the instance spec), an init
process (a Python app ignores SIGTERM as pid 1), a tmpfs as its home,
confined as the docker runtime's containers (a read-only root with a tmpfs
as its /tmp, no capabilities, the service's memory, CPU and process limits;
no-new-privileges only where the engine can set it on a service, API 1.46),
restarted by the swarm when it exits or its node is lost, and constrained by
the service's `placement` (node labels). A data service's instance
(runtime.swarm_data) is also constrained to its node, with its volume
mounted; instances run on the manager alone without a registry to pull
from, and so do those of releases whose data servers listened on the
manager's loopback (older deploys). A service of the same
name and the same definition (left by a launcher killed -9) is adopted, not
replaced.

It copies the service's log to its own output, so the shim logs and tails
it as for a process. It follows the service's tasks: the first process of
an instance writes the instance's placement (dotcloud.placement: the node
and address of its running task, none while the task is being placed or its
node is down) each time it changes, and says so in the log. When a task's
container exits by itself on a live node (the app crashed), the launcher
exits with its status, and the shim restarts it with backoff as it would a
process (with `out of memory (limit 512M)` in --exit-reason-file for the
shim when the task's watcher says the kernel killed it for memory,
runtime.swarm_oom), once it copied the rest of the task's log and removed
the service; the swarm's own restart of the task, which waits for its
restart delay, is left to end by itself (its shutdown takes 2 s on its node,
whether it ran or not), and the next launcher of the instance waits for it
before its own task starts; the kills its watcher tells while the task lives on (a
worker's) it counts in a file next to that one (`NAME.oom`: their number and
why), where the shim reads them. A task lost with its node is the swarm's to move. On SIGTERM or
SIGINT it removes the service (the swarm stops the task: SIGTERM, then
SIGKILL after the grace period) and waits for its task to end.

It must never leave its service behind when it exits by itself, and never
touch a service whose name it was not given.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run by file path (the shim gives it the app's cwd and environment).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if __name__ == "__main__" and not os.environ.get("DOCKER_HOST", "").startswith("ssh://"):
    sys.modules.setdefault("paramiko", None)   # imported by the SDK for ssh:// only

import docker  # noqa: E402
from docker.types import Mount, Privileges, Resources, RestartPolicy, ServiceMode  # noqa: E402

from dotcloud import placement  # noqa: E402
from runtime import docker_engine, docker_launcher, leftovers, swarm, swarm_oom  # noqa: E402

EXIT_ENGINE = 125
PUSH_ATTEMPTS = 3
PUSH_RETRY = 1.0
WATCH = 0.5               # seconds between looks at the service's tasks
LABEL_SPEC = "dotcloud.spec"
# The launcher's own variables, not the app's: the engine, and the tag by
# which the runtime finds (and kills) what a dead shim left on this host; a
# task outlives its launcher, and may run on this very host.
OWN_ENV = ("DOCKER_HOST", leftovers.TAG)
LOCAL_BINDS = ("127.0.0.1", "localhost")
# ContainerSpec.Privileges.NoNewPrivileges: engines before it (20.10 is 1.41)
# cannot be asked for no-new-privileges on a service at all.
NO_NEW_PRIVILEGES_API = "1.46"
# Task states after which a task never runs again.
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
# Task states in which its container was started.
STARTED = frozenset({"starting", "running"})


def wrap(settings, *, app: str, service: str, instance: str, processes: dict,
         image: str | None, user: tuple[int, int] | None = None,
         constraints: dict | None = None, node: str | None = None,
         volume: str | None = None, stop_signal: str | None = None,
         limits=None, reasons: Path | None = None) -> dict:
    """The instance's processes, each run as a swarm service by this launcher.

    `instance` names the instance uniquely within the data directory (its home
    directory's name); `processes` is {name: {argv, cwd, env}}; `image` the
    release's image on the manager's engine; `constraints` the service's
    placement ({label: value}, node labels); `node` pins it to one node (by
    id: a data service's); `volume` is NAME:TARGET, a named volume of its
    node mounted there; `stop_signal` what stops it (else SIGTERM); `limits`
    has memory_bytes, cpus and processes (None: no limit), the task's
    resource limits; `reasons` the directory where each launcher writes why
    its task ended when the exit status cannot tell (an OOM kill,
    runtime.swarm_oom), read by the shim.
    """
    grace = max(1, int(settings.stop_grace * 0.8))
    rules = [f"node.labels.{k}=={v}" for k, v in sorted((constraints or {}).items())]
    if node:
        rules.append(f"node.id=={node}")
    if not settings.registry or _uses_local_data(processes):
        # Without a registry, its image is on the manager only; data servers
        # of older deploys listen on the manager's loopback.
        rules.append("node.role==manager")
    wrapped = {}
    for index, (name, proc) in enumerate(processes.items()):
        argv = [sys.executable, str(Path(__file__).resolve()),
                "--docker-host", os.environ.get("DOCKER_HOST", ""),
                "--service", swarm.service_name(settings.data, instance, name),
                "--image", image or "", "--registry", settings.registry,
                "--push-lock", str(settings.paths.run / "swarm-push.lock"),
                "--workdir", str(proc["cwd"]), "--stop-grace", str(grace),
                "--label", f"{docker_engine.LABEL_DATA}={docker_engine.data_id(settings.data)}",
                "--label", f"{swarm.LABEL_APP}={app}",
                "--label", f"{swarm.LABEL_INSTANCE}={instance}",
                "--label", f"{swarm.LABEL_PROCESS}={name}",
                "--label", f"dotcloud.service={service}"]
        argv += ["--user", docker_engine.user() if user is None else f"{user[0]}:{user[1]}"]
        # Confined as the docker runtime's containers (see _definition for what
        # a swarm service cannot be given).
        argv += ["--scratch", docker_launcher.scratch(settings.data),
                 *docker_launcher.limit_options(limits)]
        for rule in rules:
            argv += ["--constraint", rule]
        if volume:
            argv += ["--volume", volume]
        if stop_signal:
            argv += ["--stop-signal", stop_signal]
        if index == 0:
            argv += ["--placement", str(placement.path(settings.data, instance))]
        extra = {}
        if reasons is not None:
            extra["exit_reason_file"] = str(reasons / f"{name}.exit")
            argv += ["--exit-reason-file", extra["exit_reason_file"]]
        # The launcher runs on the manager, where the container's directory
        # (a Dockerfile's WORKDIR) need not exist.
        wrapped[name] = dict(proc, argv=argv + ["--", *reachable(proc["argv"])],
                             cwd=str(settings.data), **extra)
    return wrapped


def _uses_local_data(processes: dict) -> bool:
    """Whether the instance connects to one of the platform's data servers
    (DOTCLOUD_<SERVICE>_<TYPE>_HOST=127.0.0.1 in its environment)."""
    return any(k.startswith("DOTCLOUD_") and k.endswith("_HOST") and v in LOCAL_BINDS
               for proc in processes.values() for k, v in (proc.get("env") or {}).items())


def reachable(argv: list[str]) -> list[str]:
    """The argv with a loopback bind address made the node's every address: on
    another node, the router reaches the instance over the network."""
    out = []
    for i, arg in enumerate(argv):
        for local in LOCAL_BINDS:
            if arg.startswith(f"{local}:") and arg[len(local) + 1:].isdigit():
                arg = f"0.0.0.0:{arg[len(local) + 1:]}"
            elif arg == local and i and argv[i - 1] in ("--bind", "-b", "--host", "-H"):
                arg = "0.0.0.0"
        out.append(arg)
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="swarm_launcher")
    parser.add_argument("--docker-host", default="")
    parser.add_argument("--service", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--registry", default="")
    parser.add_argument("--push-lock", default=None, help="a file to flock while pushing")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--user", default=None)
    parser.add_argument("--stop-grace", type=int, default=8)
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--constraint", action="append", default=[])
    parser.add_argument("--volume", default=None,
                        help="NAME:TARGET, a named volume of the node; its task is stopped "
                             "for good before the service is removed or replaced")
    parser.add_argument("--stop-signal", default=None)
    parser.add_argument("--placement", default=None, help="where to say where it runs")
    parser.add_argument("--scratch", default=None,
                        help="confined: read-only root, a tmpfs here, no capabilities")
    parser.add_argument("--memory", type=int, default=None, help="bytes")
    parser.add_argument("--cpus", type=float, default=None)
    parser.add_argument("--pids", type=int, default=None)
    parser.add_argument("--exit-reason-file", default=None,
                        help="written with the reason when the task was OOM-killed")
    parser.add_argument("command", nargs="+")
    return parser.parse_args(argv)


class Launcher:
    def __init__(self, opts: argparse.Namespace, env: dict):
        self.opts = opts
        self.env = {k: v for k, v in env.items() if k not in OWN_ENV}
        self.stop_requested = threading.Event()
        self.client = None
        self.created = 0.0
        self.where: tuple | None = None     # (node, addr, state) last written
        self.seen_exits: set[str] = set()
        self.kills = swarm_oom.Kills()
        self.watched = True         # its command runs under the OOM watcher
        self.kills_lock = threading.Lock()
        self.copy_lock = threading.Lock()
        self.frames = 0             # of the service's log, copied (or counted) so far
        self.drained = False        # the log was read to its end after a crash
        self.log_since = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self.client = docker.DockerClient(base_url=self.opts.docker_host or None,
                                              timeout=docker_engine.API_TIMEOUT) \
                if self.opts.docker_host else docker_engine.connect()
            self._ensure_service()
        except (docker_engine.EngineError, *docker_engine.ENGINE_ERRORS) as e:
            say(f"cannot start service {self.opts.service}: {docker_engine.short(e)}")
            self._remove()
            return EXIT_ENGINE
        # One start for every read of the log (a stream ends when its task
        # moves, and is followed again; the frames copied are skipped).
        self.log_since = int(self.created) if self.created else int(time.time())
        threading.Thread(target=self._pump, daemon=True).start()
        status = None
        while not self.stop_requested.wait(WATCH):
            try:
                status = self._watch()
            except docker_engine.ENGINE_ERRORS as e:
                say(f"cannot see the service's tasks: {docker_engine.short(e)}")
                continue
            if status is not None:
                break
        if status is not None:
            self._drain()
            self._let_go()
        else:
            self._remove()
        return 0 if status is None else status

    def _on_signal(self, signum, frame) -> None:
        self.stop_requested.set()

    # -- the service -------------------------------------------------------

    def _definition(self, image: str) -> dict:
        opts = self.opts
        labels = dict(item.split("=", 1) for item in opts.label)
        home = self.env.get("HOME")
        env = dict(self.env)
        mounts = [Mount(home, None, type="tmpfs")] if home else []
        confined = {}
        if opts.scratch:
            mounts.append(Mount(opts.scratch, None, type="tmpfs"))
            if opts.scratch != "/tmp":
                env.setdefault("TMPDIR", opts.scratch)
            confined = dict(read_only=True, cap_drop=["ALL"])
            if _api_at_least(self.client, NO_NEW_PRIVILEGES_API):
                privileges = Privileges()
                privileges["NoNewPrivileges"] = True
                confined["privileges"] = privileges
        if opts.volume:
            source, _, target = opts.volume.partition(":")
            mounts.append(Mount(target, source, type="volume", labels=labels))
        if opts.stop_signal:
            confined["stop_signal"] = opts.stop_signal
        kwargs = dict(
            **confined, resources=_resources(opts),
            name=opts.service, env=[f"{k}={v}" for k, v in env.items()],
            workdir=opts.workdir, user=opts.user, labels=labels,
            # (Its container has the data directory's label all the same, from
            # its image: runtime.swarm_sweeper keeps the swarm's containers.)
            container_labels={k: v for k, v in labels.items()
                              if k != docker_engine.LABEL_DATA},
            networks=["host"], init=True, hostname="{{.Node.Hostname}}", mode=ServiceMode("replicated", replicas=1),
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000, max_attempts=0),
            constraints=opts.constraint, stop_grace_period=opts.stop_grace * 1_000_000_000,
            mounts=mounts,
            log_driver="json-file", log_driver_options={"max-size": "1m", "max-file": "1"})
        self.watched = swarm_oom.has_shell(
            self.client, opts.image or image,
            Path(opts.push_lock).parent / "swarm-shell" if opts.push_lock else None)
        unwatched = None if self.watched else "the image has no /bin/sh"
        if self.watched:
            try:
                kwargs.update(command=swarm_oom.command(opts.command), configs=[
                    swarm_oom.config(self.client, {
                        docker_engine.LABEL_DATA: labels.get(docker_engine.LABEL_DATA, "")})])
            except docker_engine.ENGINE_ERRORS as e:
                self.watched = False
                unwatched = f"cannot make the OOM watcher's config: {docker_engine.short(e)}"
        if not self.watched:
            kwargs["command"] = opts.command
            say(f"{unwatched}: its task runs unwatched (an OOM kill is guessed from its exit "
                "status)")
        digest = hashlib.sha256(json.dumps([image, kwargs], sort_keys=True, default=repr)
                                .encode()).hexdigest()[:16]
        kwargs["labels"] = dict(labels, **{LABEL_SPEC: digest})
        return kwargs

    def _ensure_service(self) -> None:
        opts = self.opts
        if not opts.image:
            raise docker_engine.EngineError("the release has no image (it was built for another "
                                            "runtime): push again")
        image = self._publish()
        definition = self._definition(image)
        try:
            existing = self.client.services.get(opts.service)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            have = ((existing.attrs.get("Spec") or {}).get("Labels") or {}).get(LABEL_SPEC)
            if have == definition["labels"][LABEL_SPEC]:
                say(f"adopted the running service {opts.service}")
                self.created = 0.0
                return
            self._stop_task(opts.service)
            swarm.remove_service(self.client, opts.service)
            say(f"removed a stale service {opts.service}")
            self._wait_gone(opts.service, 30)
        # The tasks of a service of this name its last launcher removed (after
        # a crash, see _let_go) end before this one's starts: never two tasks
        # of one instance at once (one port, one data directory).
        if not self._wait_ended(opts.service, opts.stop_grace + (30 if opts.volume else 5),
                                "the last task of the instance is still ending",
                                interruptible=True):
            if self.stop_requested.is_set():
                return              # stopped meanwhile: nothing to create
            say(f"a task of the last service {opts.service} did not report its end; "
                "starting all the same")
        self.created = time.time()
        self.client.services.create(image, **definition)
        say(f"service {opts.service} created from {image}")

    def _publish(self) -> str:
        """The image pushed to the registry, one launcher at a time: the
        instances of a deploy start together, and concurrent pushes of one
        image make the registry refuse some."""
        fd = os.open(self.opts.push_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) \
            if self.opts.push_lock else None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            for attempt in range(PUSH_ATTEMPTS):
                try:
                    return swarm.publish_image(self.client, self.opts.image, self._image_name(),
                                               self.opts.registry)
                except swarm.SwarmError as e:
                    if attempt + 1 == PUSH_ATTEMPTS or "not on the manager" in str(e):
                        raise
                    say(f"{e}; trying again")
                    time.sleep(PUSH_RETRY)
        finally:
            if fd is not None:
                os.close(fd)
        raise AssertionError("unreachable")

    def _image_name(self) -> str:
        """The release image's own name (dotcloud/APP:vN-SERVICE), the registry's too."""
        try:
            tags = self.client.images.get(self.opts.image).tags
        except docker.errors.ImageNotFound:
            tags = []
        own = [t for t in tags if t.startswith("dotcloud/")]
        if own:
            return own[0]
        return f"dotcloud/image:{self.opts.image.split(':')[-1][:16]}"

    def _wait_gone(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            containers = self.client.containers.list(
                filters={"label": f"com.docker.swarm.service.name={name}"})
            if not containers and not self._tasks(name, running_only=True):
                return
            time.sleep(0.2)

    def _stop_task(self, name: str) -> None:
        """Scale the service to 0 and wait until its task ended on its node:
        its container may run there for the stop grace period after the
        service is gone, holding the instance's port (a restart in place
        would start the next task beside it, find the port in use, and be
        answered by the old one, draining), and with a volume the next server
        must not start before (two servers on one data directory). A task on
        a node that is not ready never reports: an app's is not waited for (a
        lost node's instances move at once); a data server's is, for a while."""
        try:
            self.client.services.get(name).scale(0)
        except docker.errors.NotFound:
            return
        if not self._wait_ended(name, self.opts.stop_grace + (30 if self.opts.volume else 5)):
            say(f"the task of {name} did not report its end; removing the service all the same")

    def _wait_ended(self, name: str, timeout: float, saying: str | None = None,
                    started_only: bool = False, interruptible: bool = False) -> bool:
        """Wait until no task of a service of this name (a removed one's too:
        its tasks keep their name until they ended and were reaped) may still
        run on a ready node (any node for a data server's); `started_only`:
        of those whose container was started. False after `timeout` seconds,
        or at once on SIGTERM when `interruptible`."""
        deadline = time.monotonic() + timeout
        while True:
            live = [t for t in self._tasks_named(name)
                    if (t.get("Status") or {}).get("State") not in ENDED and
                    (not started_only or (t.get("Status") or {}).get("State") in STARTED)]
            if live and not self.opts.volume:
                ready = {n.id for n in swarm.nodes(self.client) if n.state == "ready"}
                live = [t for t in live if t.get("NodeID") in ready]
            if not live:
                return True
            if saying:
                say(saying)
                saying = None
            if time.monotonic() >= deadline or (interruptible and self.stop_requested.is_set()):
                return False
            time.sleep(0.2)

    def _tasks_named(self, name: str) -> list[dict]:
        """The tasks of services named so, this one's and removed ones'
        (a task's name is SERVICE.SLOT.ID; a service's name has no dot)."""
        return self.client.api.tasks(filters={"name": f"{name}."})

    def _tasks(self, name: str, running_only: bool = False) -> list[dict]:
        filters = {"service": name}
        if running_only:
            filters["desired-state"] = "running"
        try:
            return self.client.api.tasks(filters=filters)
        except docker.errors.NotFound:
            return []

    def _let_go(self) -> None:
        """Remove the service after its task crashed, without waiting for the
        swarm's restart of it to report its end. The crashed task has ended;
        its restart waits for the service's restart delay, and once the
        service is removed it never starts, but its node takes 2 s to say so
        (a task's shutdown waits for the gossip, whether it ran or not): the
        shim, and a deploy waiting for the instance, need not wait for that.
        The next launcher of the instance waits for it before its own task
        starts (_ensure_service). A restart the swarm did start (the crash
        was seen after the delay) holds the instance's port: it is waited for
        here, as on a stop. A data server's is stopped as on a stop."""
        if self.opts.volume:
            self._remove()
            return
        try:
            if swarm.remove_service(self.client, self.opts.service) and not self._wait_ended(
                    self.opts.service, self.opts.stop_grace + 5, started_only=True):
                say(f"the restart of {self.opts.service}'s task did not report its end")
        except docker_engine.ENGINE_ERRORS as e:
            say(f"cannot remove service {self.opts.service}: {docker_engine.short(e)}")
        if self.opts.placement:
            Path(self.opts.placement).unlink(missing_ok=True)

    def _remove(self) -> None:
        if self.client is None:
            return
        try:
            self._stop_task(self.opts.service)
            if swarm.remove_service(self.client, self.opts.service):
                self._wait_gone(self.opts.service, self.opts.stop_grace + 5)
        except docker_engine.ENGINE_ERRORS as e:
            say(f"cannot remove service {self.opts.service}: {docker_engine.short(e)}")
        if self.opts.placement:
            Path(self.opts.placement).unlink(missing_ok=True)

    # -- following it ------------------------------------------------------

    def _watch(self) -> int | None:
        """Note where its task runs; the exit status of a task that crashed."""
        tasks = self._tasks(self.opts.service)
        nodes = {n.id: n for n in swarm.nodes(self.client)}
        running = None
        for t in tasks:
            status = t.get("Status") or {}
            state = status.get("State", "")
            node = nodes.get(t.get("NodeID", ""))
            if state == "running" and t.get("DesiredState") == "running":
                if node is None or node.state == "ready":
                    running = (t, node)
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            if (state in ("failed", "complete") and code is not None and t["ID"] not in
                    self.seen_exits and node is not None and node.state == "ready"
                    and _stamp(status.get("Timestamp")) >= self.created):
                self.seen_exits.add(t["ID"])
                if not self.stop_requested.is_set():
                    say(f"its task on {node.hostname} exited with status {code}: "
                        f"{status.get('Err') or status.get('Message') or state}")
                    self._tell(self._exit_reason(t, int(code)))
                    return int(code)
        if running is not None:
            task, node = running
            where = (node.hostname if node else None, node.addr if node else None, "running",
                     task["ID"])
        else:
            where = (None, None, "placing", None)
        if where != self.where:
            before, self.where = self.where, where
            if where[2] == "running":
                say(f"running on {where[0]} ({where[1]})")
            elif before is not None and self.opts.volume:
                # Pinned to the node that holds its volume: it never moves.
                say("its task stopped running: waiting for its node, where its data is")
            elif before is not None:
                say("its task stopped running: waiting for the swarm to place it again")
            if self.opts.placement:
                placement.write(Path(self.opts.placement), placement.Placement(*where))
        return None

    def _exit_reason(self, task: dict, code: int) -> str | None:
        """Why the task ended, as its watcher's last lines in its log say."""
        if self.opts.memory is None or not code:
            return None
        if not self.watched:
            return swarm_oom.exit_reason(code, self.opts.memory, None,
                                         "its task ran unwatched")
        lines = swarm_oom.task_log(self.client, task["ID"])
        with self.kills_lock:
            killed = None if lines is None else self.kills.killed_at_exit(
                self.kills.of_lines(lines), code)
            self._count_kills()
        return swarm_oom.exit_reason(code, self.opts.memory, killed)

    def _told(self, line: bytes) -> bool:
        """Whether a line of the log is the watcher's (counted, not copied)."""
        with self.kills_lock:
            new = self.kills.see(line)
            if new:
                self._count_kills()
        return new is not None

    def _count_kills(self) -> None:
        """The kills told so far, for the shim (NAME.oom next to the exit
        reason file): their number, and why, on two lines."""
        if not self.kills.total or not self.opts.exit_reason_file:
            return
        path = Path(self.opts.exit_reason_file).with_suffix(".oom")
        reason = swarm_oom.exit_reason(1, self.opts.memory, True) or "out of memory"
        try:
            path.with_suffix(".oom.tmp").write_text(f"{self.kills.total}\n{reason}\n")
            os.replace(path.with_suffix(".oom.tmp"), path)
        except OSError as e:
            say(f"cannot write {path}: {e}")

    def _tell(self, reason: str | None) -> None:
        """Leave the shim the reason the exit status cannot carry (its
        container's OOM kill, known on its node only)."""
        if reason is None:
            return
        say(reason)
        if self.opts.exit_reason_file:
            try:
                Path(self.opts.exit_reason_file).write_text(reason + "\n")
            except OSError as e:
                say(f"cannot write {self.opts.exit_reason_file}: {e}")

    def _pump(self) -> None:
        """The service's output, as it comes, to ours (the shim logs it)."""
        while not self.stop_requested.is_set():
            try:
                stream = self.client.api.service_logs(
                    self.opts.service, stdout=True, stderr=True, follow=True,
                    since=self.log_since)
                for n, chunk in enumerate(stream):
                    with self.copy_lock:
                        if self.drained:
                            return
                        if n >= self.frames:
                            self._copy(chunk)
            except (*docker_engine.ENGINE_ERRORS, ValueError):
                pass
            self.stop_requested.wait(1.0)    # the stream ended: its task moved, or it is gone

    def _copy(self, chunk) -> None:
        self.frames += 1
        data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
        if self._told(data):
            return                  # one frame is one line
        while data:
            data = data[os.write(1, data):]

    def _drain(self) -> None:
        """The rest of a crashed task's output, before the launcher exits with
        its status: the followed stream lags behind the task's end (its lines
        come from its node), and a traceback that comes after the exit is
        lost to the push that shows why the instance crashed."""
        try:
            stream = self.client.api.service_logs(
                self.opts.service, stdout=True, stderr=True, follow=False,
                since=self.log_since)
            chunks = list(stream)
        except (*docker_engine.ENGINE_ERRORS, ValueError) as e:
            say(f"cannot read the rest of its log: {docker_engine.short(e)}")
            return
        with self.copy_lock:
            self.drained = True
            for chunk in chunks[self.frames:]:
                self._copy(chunk)


def _api_at_least(client, version: str) -> bool:
    """Whether the engine speaks this API version (compared as numbers)."""
    try:
        have = client.version().get("ApiVersion", "0")
    except docker_engine.ENGINE_ERRORS:
        return False
    return tuple(map(int, have.split("."))) >= tuple(map(int, version.split(".")))


def _resources(opts: argparse.Namespace) -> Resources | None:
    """The task's limits. A service has no memory-swap setting: the engine's
    default applies (swap up to the limit again, where the node has swap)."""
    if opts.memory is None and opts.cpus is None and opts.pids is None:
        return None
    resources = Resources(mem_limit=opts.memory,
                          cpu_limit=None if opts.cpus is None else int(opts.cpus * 1e9))
    if opts.pids is not None:
        # Limits.Pids (engine API 1.41); the SDK has no argument for it.
        resources.setdefault("Limits", {})["Pids"] = opts.pids
    return resources


def _stamp(text: str | None) -> float:
    try:
        return docker_engine._created(text or "")
    except Exception:
        return 0.0


def say(message: str) -> None:
    sys.stderr.write(f"[swarm] {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    opts = parse(sys.argv[1:] if argv is None else argv)
    sys.exit(Launcher(opts, dict(os.environ)).run())


if __name__ == "__main__":
    main()
