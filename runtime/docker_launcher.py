"""One instance process as a container: what the shim runs under the docker runtime.

`wrap()` (called by the deployer) turns each process of an instance into
`python docker_launcher.py --image IMG --name NAME ... -- ARGV`. Run by the
shim like any process, the launcher removes a stale container of that name
(left by a shim killed with -9), creates and starts the container from the
service's base image on the host network, as the platform's user, in the
process's working directory, with its environment (the launcher's own, which
the shim set from the instance spec), the release and the dependency cache
bind-mounted read-only at the same paths and the instance's home read-write.
It copies the container's stdout and stderr to its own as they come, so the
shim timestamps, logs and tails them exactly as for a process; on SIGTERM or
SIGINT it stops the container (every process gets SIGTERM, then SIGKILL
after the grace period); it removes the container and exits with its exit
status (128+N becomes death by signal N, as a process would show it).

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

from runtime import docker_engine  # noqa: E402

EXIT_ENGINE = 125          # what `docker run` exits with when the engine fails
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}}
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
         home: Path) -> dict:
    """The instance's processes, each run in a container by this launcher.

    `instance` names the instance uniquely within the data directory (the
    deployer's home directory name); `processes` is {name: {argv, cwd, env}}.
    """
    image = docker_engine.base_image(settings, service_type)
    mounts = [f"{home}:{home}:rw", f"{settings.data / 'cache'}:{settings.data / 'cache'}:ro"]
    releases = settings.data / "releases" / app
    for proc in processes.values():
        cwd = Path(proc["cwd"])
        if cwd.is_relative_to(releases):
            release = releases / cwd.relative_to(releases).parts[0]
            mounts.append(f"{release}:{release}:ro")
    if service_type == "static":
        # Our own static file server, run from where the platform has it.
        package = Path(__file__).resolve().parents[1] / "buildpacks"
        mounts.append(f"{package}:{package}:ro")
    grace = max(1, int(settings.stop_grace * 0.8))
    wrapped = {}
    for name, proc in processes.items():
        argv = [sys.executable, str(Path(__file__).resolve()), "--image", image,
                "--name", docker_engine.container_name(settings.data, app, instance, name),
                "--workdir", str(proc["cwd"]), "--user", docker_engine.user(),
                "--stop-grace", str(grace),
                "--label", f"{docker_engine.LABEL_DATA}={docker_engine.data_id(settings.data)}",
                "--label", f"dotcloud.app={app}", "--label", f"dotcloud.instance={instance}",
                "--label", f"dotcloud.process={name}"]
        for mount in dict.fromkeys(mounts):
            argv += ["--mount", mount]
        wrapped[name] = dict(proc, argv=argv + ["--", *proc["argv"]])
    return wrapped


def container_names(spec: dict) -> list[str]:
    """The containers an instance spec (as written by the deployer) runs in; none
    when its processes were not wrapped (the process runtime)."""
    names = []
    for proc in (spec.get("processes") or {}).values():
        argv = list(proc.get("argv") or [])
        if len(argv) > 2 and argv[1] == str(Path(__file__).resolve()):
            names.append(parse(argv[2:]).name)
    return names


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="docker_launcher")
    parser.add_argument("--image", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--user", default=None)
    parser.add_argument("--stop-grace", type=int, default=8)
    parser.add_argument("--mount", action="append", default=[], help="SRC:DST:ro|rw")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("command", nargs="+")
    return parser.parse_args(argv)


def volumes(mounts: list[str]) -> dict:
    out = {}
    for mount in mounts:
        src, dst, mode = mount.rsplit(":", 2)
        out[src] = {"bind": dst, "mode": mode}
    return out


class Launcher:
    def __init__(self, opts: argparse.Namespace, env: dict):
        self.opts = opts
        self.env = env
        self.stop_requested = threading.Event()
        self.exited = threading.Event()
        self.status: int | None = None
        self.client = None
        self.container = None
        self.stream = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start()
        except (docker_engine.EngineError, *docker_engine.ENGINE_ERRORS) as e:
            say(f"cannot start container {self.opts.name}: {e}")
            self._remove()
            return EXIT_ENGINE
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
        self.client = docker_engine.connect()
        if docker_engine.remove(self.client, self.opts.name):
            say(f"removed a stale container {self.opts.name}")
        labels = dict(item.split("=", 1) for item in self.opts.label)
        self.container = self.client.containers.create(
            self.opts.image, self.opts.command, name=self.opts.name, environment=self.env,
            working_dir=self.opts.workdir, user=self.opts.user, network_mode="host",
            volumes=volumes(self.opts.mount), labels=labels, log_config=LOG_CONFIG,
            stdin_open=False, tty=False)
        # Attached before the start, so not a line of its output is missed.
        self.stream = self.client.api.attach(self.container.id, stdout=True, stderr=True,
                                             stream=True, logs=False, demux=True)
        self.container.start()

    def _pump(self) -> threading.Thread:
        stream = self.stream

        def copy():
            try:
                for out, err in stream:
                    for fd, data in ((1, out), (2, err)):
                        while data:
                            data = data[os.write(fd, data):]
            except (*docker_engine.ENGINE_ERRORS, ValueError):
                pass  # the engine went away; the wait below says how it ended
        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        return thread

    def _wait(self) -> None:
        try:
            self.status = int(self.container.wait(timeout=None).get("StatusCode", EXIT_ENGINE))
        except docker_engine.ENGINE_ERRORS as e:
            say(f"lost the container {self.opts.name}: {e}")
        self.exited.set()

    def _stop(self) -> None:
        try:
            self.container.exec_run(TERM_ALL, user=self.opts.user or "")
        except docker_engine.ENGINE_ERRORS:
            pass  # not running any more, or the engine is gone: stop() says which
        try:
            self.container.stop(timeout=self.opts.stop_grace)
        except docker_engine.ENGINE_ERRORS as e:
            say(f"cannot stop container {self.opts.name}: {e}")

    def _remove(self) -> None:
        if self.client is None:
            return
        try:
            docker_engine.remove(self.client, self.opts.name)
        except docker_engine.ENGINE_ERRORS as e:
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
