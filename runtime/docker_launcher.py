"""One instance process as a container: what the shim runs under the docker runtime.

`wrap()` turns each process of an instance into
`python docker_launcher.py --image IMG --name NAME ... -- ARGV`. Run by the
shim like any process, the launcher removes a stale container of that name
(left by a shim killed with -9), creates and starts the container from the
release's image (runtime.docker_image: the release and what it runs with, at
the same paths as on this host) on the host network, as the app's user (the
platform's when the spec names none), in the process's working directory,
with its environment (the launcher's own, which the shim set from the
instance spec) and the instance's home bind-mounted read-write, nothing else
of the data directory. The container is confined: a read-only root file
system with a private /tmp (/var/tmp, named by TMPDIR, when the data
directory itself is under /tmp, which a tmpfs there would hide), no
capabilities, no-new-privileges, and the spec's limits (memory, CPUs,
processes). An instance spec without an image (written before releases were
images) runs the service's base image with the release and the dependency
cache bind-mounted read-only instead. The launcher speaks to the engine
through runtime.docker_socket, not the SDK, whose import alone would delay
every instance start by 0.1-0.3 s. It copies the container's stdout and
stderr to its own as they come, so the shim timestamps, logs and tails them
exactly as for a process; on SIGTERM or SIGINT it stops the container
(every process gets SIGTERM, then SIGKILL after the grace period); it
removes the container and exits with its exit status (128+N becomes death
by signal N, as a process would show it). With --stdin (a `run` command,
runtime.docker_run) its own stdin goes to the container's, and its end
closes the container's.

It must never leave its container running when it exits by itself, and
never touch a container whose name it was not given.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run by file path (the shim gives it the app's cwd and environment,
    # which need not find this package): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runtime import docker_socket  # noqa: E402

EXIT_ENGINE = 125          # what `docker run` exits with when the engine fails
EXIT_NOT_FOUND = 127       # and when the command is not in the image, as a shell does
LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}}
# What the engine may raise at any call.
ENGINE_ERRORS = (docker_socket.EngineError, OSError)
# Processes besides the container's first one get SIGTERM through an exec
# (signalling pid 1 alone would miss a shell's children).
TERM_ALL = ["/bin/sh", "-c", "kill -TERM -1 2>/dev/null; exit 0"]
PUMP_JOIN = 5.0
# Signals whose default action ends a process without a core dump: an exit
# status of 128+N with one of these is shown as death by it.
DEADLY = frozenset(int(s) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGPIPE,
                                    signal.SIGALRM, signal.SIGTERM, signal.SIGUSR1,
                                    signal.SIGUSR2))


def wrap(settings, *, app: str, service_type: str, instance: str, processes: dict,
         home: Path, image: str | None = None, user: tuple[int, int] | None = None,
         limits=None, reasons: Path | None = None) -> dict:
    """The instance's processes, each run in a container by this launcher.

    `instance` names the instance uniquely within the data directory (the
    deployer's home directory name); `processes` is {name: {argv, cwd, env}};
    `image` is the release's image (None: the base image, with mounts);
    `user` is (uid, gid) (None: the platform's own); `limits` has
    memory_bytes, cpus and processes, each None for no limit; `reasons` is
    the directory where each launcher writes why its container ended when the
    shim cannot tell from the exit status (an OOM kill), read by the shim.
    """
    from runtime import docker_engine   # the SDK: for the runtime, never the launcher
    mounts = [f"{home}:{home}:rw"]
    if image is None:
        image = docker_engine.base_image(settings, service_type)
        mounts += _release_mounts(settings, app, service_type, processes)
    grace = max(1, int(settings.stop_grace * 0.8))
    wrapped = {}
    for name, proc in processes.items():
        argv = [sys.executable, str(Path(__file__).resolve()), "--image", image,
                "--name", docker_engine.container_name(settings.data, app, instance, name),
                "--workdir", str(proc["cwd"]),
                "--user", f"{user[0]}:{user[1]}" if user else docker_engine.user(),
                "--stop-grace", str(grace), "--scratch", scratch(settings.data),
                *limit_options(limits),
                "--label", f"{docker_engine.LABEL_DATA}={docker_engine.data_id(settings.data)}",
                "--label", f"dotcloud.app={app}", "--label", f"dotcloud.instance={instance}",
                "--label", f"dotcloud.process={name}"]
        for mount in dict.fromkeys(mounts):
            argv += ["--mount", mount]
        extra = {}
        if reasons is not None:
            extra["exit_reason_file"] = str(reasons / f"{name}.exit")
            argv += ["--exit-reason-file", extra["exit_reason_file"]]
        # The launcher runs on the host: the container's directory (a
        # Dockerfile's WORKDIR) need not exist here, its home does.
        wrapped[name] = dict(proc, argv=argv + ["--", *proc["argv"]], cwd=str(home), **extra)
    return wrapped


def scratch(data: Path) -> str:
    """Where the container's private tmpfs goes: /tmp, unless that would hide the data
    directory (the release and its dependencies live in the image at their host paths)."""
    return "/var/tmp" if Path(data).resolve().is_relative_to("/tmp") else "/tmp"


def limit_options(limits) -> list[str]:
    options = []
    for option, value in (("--memory", getattr(limits, "memory_bytes", None)),
                          ("--cpus", getattr(limits, "cpus", None)),
                          ("--pids", getattr(limits, "processes", None))):
        if value is not None:
            options += [option, str(value)]
    return options


def _release_mounts(settings, app: str, service_type: str, processes: dict) -> list[str]:
    mounts = [f"{settings.paths.cache}:{settings.paths.cache}:ro"]
    releases = settings.paths.releases(app)
    for proc in processes.values():
        cwd = Path(proc["cwd"])
        if cwd.is_relative_to(releases):
            release = releases / cwd.relative_to(releases).parts[0]
            mounts.append(f"{release}:{release}:ro")
    if service_type == "static":
        # Our own static file server, run from where the platform has it.
        package = Path(__file__).resolve().parents[1] / "buildpacks"
        mounts.append(f"{package}:{package}:ro")
    return mounts


def container_names(settings, spec) -> dict[str, str]:
    """process -> the container it runs in, for an InstanceSpec (None: a row
    that cannot be read); none but under the docker runtime, where data
    services run on the host too."""
    if spec is None or settings.runtime != "docker" or spec.data_service is not None:
        return {}
    from runtime import docker_engine
    return {p.name: docker_engine.container_name(settings.data, spec.app, spec.instance_name,
                                                 p.name)
            for p in spec.processes}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="docker_launcher")
    parser.add_argument("--image", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--user", default=None)
    parser.add_argument("--stop-grace", type=int, default=8)
    parser.add_argument("--scratch", default=None,
                        help="confined: read-only root, a tmpfs here (a private /tmp), "
                             "no capabilities, no new privileges")
    parser.add_argument("--memory", type=int, default=None, help="bytes")
    parser.add_argument("--cpus", type=float, default=None)
    parser.add_argument("--pids", type=int, default=None)
    parser.add_argument("--mount", action="append", default=[], help="SRC:DST:ro|rw")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--stdin", action="store_true",
                        help="the launcher's stdin goes to the container's (a run command)")
    parser.add_argument("--docker-host", default=None, help="the engine (else DOCKER_HOST)")
    parser.add_argument("--exit-reason-file", default=None,
                        help="written with the reason when the container was OOM-killed")
    parser.add_argument("command", nargs="+")
    return parser.parse_args(argv)


def host_options(opts: argparse.Namespace) -> dict:
    """The container's HostConfig: host network, mounts, log, confinement, limits."""
    options: dict = {"NetworkMode": "host", "Binds": list(opts.mount), "LogConfig": LOG_CONFIG}
    if opts.scratch:
        options.update(ReadonlyRootfs=True, Tmpfs={opts.scratch: "rw,nosuid,nodev,mode=1777"},
                       CapDrop=["ALL"], SecurityOpt=["no-new-privileges"])
    if opts.memory is not None:
        # No swap beyond the limit, as the process runtime's limit allows none.
        options.update(Memory=opts.memory, MemorySwap=opts.memory)
    if opts.cpus is not None:
        options["NanoCpus"] = int(opts.cpus * 1e9)
    if opts.pids is not None:
        options["PidsLimit"] = opts.pids
    return options


class Launcher:
    def __init__(self, opts: argparse.Namespace, env: dict):
        self.opts = opts
        self.env = env
        self.stop_requested = threading.Event()
        self.exited = threading.Event()
        self.status: int | None = None
        self.engine: docker_socket.Engine | None = None
        self.container: str | None = None
        self.stream = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start()
        except ENGINE_ERRORS as e:
            # The runtime's words for a program the image lacks (absolute or on PATH).
            missing = f'exec: "{self.opts.command[0]}"' in str(e)
            say(f"{self.opts.command[0]}: command not found in the image" if missing
                else f"cannot start container {self.opts.name}: {e}")
            self._remove()
            return EXIT_NOT_FOUND if missing else EXIT_ENGINE
        pump = self._pump()
        threading.Thread(target=self._wait, daemon=True).start()
        stopped = False
        while not self.exited.wait(0.2):
            if self.stop_requested.is_set() and not stopped:
                stopped = True
                self._stop()
        pump.join(PUMP_JOIN)    # the rest of its output, once it exited
        self._remove()
        return EXIT_ENGINE if self.status is None else self.status

    def _on_signal(self, signum, frame) -> None:
        self.stop_requested.set()

    def _start(self) -> None:
        self.engine = docker_socket.Engine(self.opts.docker_host) if self.opts.docker_host \
            else docker_socket.Engine.from_env()
        if self.engine.remove(self.opts.name):
            say(f"removed a stale container {self.opts.name}")
        labels = dict(item.split("=", 1) for item in self.opts.label)
        self.container = self.engine.create(self.opts.name, {
            "Image": self.opts.image,
            # The command exactly, whatever ENTRYPOINT the image has (a Dockerfile's).
            "Entrypoint": self.opts.command[:1], "Cmd": self.opts.command[1:],
            "Env": [f"{k}={v}" for k, v in self._environment().items()],
            "WorkingDir": self.opts.workdir, "User": self.opts.user or "", "Labels": labels,
            "AttachStdout": True, "AttachStderr": True, "Tty": False,
            "OpenStdin": self.opts.stdin, "StdinOnce": self.opts.stdin,
            "AttachStdin": self.opts.stdin,
            "HostConfig": host_options(self.opts)})
        # Attached before the start, so not a line of its output is missed.
        self.stream = self.engine.attach(self.container, stdin=self.opts.stdin)
        self.engine.start(self.container)
        if self.opts.stdin:
            threading.Thread(target=self._feed, daemon=True).start()

    def _feed(self) -> None:
        """Our stdin to the container's, then its end."""
        try:
            while data := os.read(0, 65536):
                self.stream.write(data)
            self.stream.close_stdin()
        except OSError:
            pass    # the container is gone, or it closed its stdin

    def _environment(self) -> dict:
        env = dict(self.env)
        if self.opts.scratch and self.opts.scratch != "/tmp":
            env.setdefault("TMPDIR", self.opts.scratch)
        return env

    def _pump(self) -> threading.Thread:
        stream = self.stream

        def copy():
            try:
                for fd, data in stream:
                    while data:
                        data = data[os.write(fd, data):]
            except (*ENGINE_ERRORS, ValueError):
                pass  # the engine went away; the wait below says how it ended
        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        return thread

    def _wait(self) -> None:
        try:
            self.status = self.engine.wait(self.container)
            if self.opts.memory is not None and \
                    self.engine.inspect(self.container).get("State", {}).get("OOMKilled"):
                from dotcloud.resources import format_memory
                reason = f"out of memory (limit {format_memory(self.opts.memory)})"
                say(reason)
                self._tell(reason)
        except ENGINE_ERRORS as e:
            say(f"lost the container {self.opts.name}: {e}")
        self.exited.set()

    def _tell(self, reason: str) -> None:
        """Leave the shim the reason its exit status cannot carry."""
        if self.opts.exit_reason_file:
            try:
                Path(self.opts.exit_reason_file).write_text(reason + "\n")
            except OSError as e:
                say(f"cannot write {self.opts.exit_reason_file}: {e}")

    def _stop(self) -> None:
        try:
            self.engine.exec_detached(self.container, TERM_ALL, self.opts.user or "")
        except ENGINE_ERRORS:
            pass  # not running any more, or the engine is gone: stop() says which
        try:
            self.engine.stop(self.container, self.opts.stop_grace)
        except ENGINE_ERRORS as e:
            say(f"cannot stop container {self.opts.name}: {e}")

    def _remove(self) -> None:
        if self.engine is None:
            return
        try:
            self.engine.remove(self.opts.name)
        except ENGINE_ERRORS as e:
            say(f"cannot remove container {self.opts.name}: {e}")


def say(message: str) -> None:
    sys.stderr.write(f"[docker] {message}\n")
    sys.stderr.flush()


def exit_like(status: int) -> None:
    """Exit with `status`, dying by the signal when it says 128+N, as a process would."""
    sig = status - 128
    if sig in DEADLY:
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    opts = parse(sys.argv[1:] if argv is None else argv)
    exit_like(Launcher(opts, dict(os.environ)).run())


if __name__ == "__main__":
    main()
