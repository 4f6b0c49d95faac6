"""One `run` command as a one-off swarm task: what runtime.swarm_run starts.

`python swarm_oneoff.py --service NAME --image IMG ... -- ARGV` takes the
options of runtime.swarm_launcher and defines the service as it does (the
release image pushed to the registry, the app's uid, confinement, limits,
the environment it was given, constraints), with one difference: its task is
never restarted (restart condition none), and its log file holds 1 GiB
before it rotates (LOG_OPTIONS). It streams the task's stdout and
stderr to its own as they come (the service's log, followed), and once the
task ended, whatever of that log the stream had not brought yet; then it
removes the service and exits with the task's exit status: 127 with
`ARGV0: command not found in the image` when the image lacks the command,
125 when the swarm could not run it (the reason on stderr), and 137 with
the reason in --exit-reason-file when the task's watcher says the kernel
killed it for memory (runtime.swarm_oom; a process killed while the command
runs on is said on stderr). A task has no stdin: the
launcher reads its own and drops it, saying so once. On SIGTERM or SIGINT
it removes the service and exits 143.

It never touches a service whose name it was not given.
"""
from __future__ import annotations

import collections
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if __name__ == "__main__" and not os.environ.get("DOCKER_HOST", "").startswith("ssh://"):
    sys.modules.setdefault("paramiko", None)   # imported by the SDK for ssh:// only

import docker  # noqa: E402
from docker.types import RestartPolicy  # noqa: E402

from runtime import docker_engine, swarm, swarm_launcher, swarm_oom  # noqa: E402

EXIT_ENGINE = swarm_launcher.EXIT_ENGINE
EXIT_NOT_FOUND = 127
EXIT_STOPPED = 143          # 128 + SIGTERM
NOT_FOUND = ("executable file not found", "no such file or directory")
# What the task's init (tini) says when the command cannot be run at all.
TINI_EXEC_FAILED = re.compile(rb"\[FATAL tini \(\d+\)\] exec .* failed: "
                              rb"(No such file or directory|Permission denied)")
HEADER = 8                  # a log frame's: stream (1 stdout, 2 stderr), 3 zero bytes, length
FOLLOW_JOIN = 5.0
# The task's log is the command's output: the engine's log file must hold all
# of it, since a follower that lags behind a rotation (json-file) loses what
# was rotated away: 40% of a 6 MB output, with the instances' 1m. It is
# removed with the service at the end.
LOG_OPTIONS = {"max-size": "1g", "max-file": "1"}


class OneOff(swarm_launcher.Launcher):
    def __init__(self, opts, env: dict):
        super().__init__(opts, env)
        self.ended = threading.Event()
        self.stream = None       # the followed log's socket
        self.written: collections.Counter = collections.Counter()   # frames already copied
        self.waiting_said = ""
        self.failed: tuple[dict, int] | None = None     # its task, ended with that status

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        threading.Thread(target=self._drop_stdin, daemon=True).start()
        try:
            self.client = docker.DockerClient(base_url=self.opts.docker_host,
                                              timeout=docker_engine.API_TIMEOUT) \
                if self.opts.docker_host else docker_engine.connect()
            self._ensure_service()
        except (docker_engine.EngineError, *docker_engine.ENGINE_ERRORS) as e:
            swarm_launcher.say(f"cannot start service {self.opts.service}: "
                               f"{docker_engine.short(e)}")
            self._remove()
            return EXIT_ENGINE
        follower = threading.Thread(target=self._follow, daemon=True)
        follower.start()
        code = None
        while code is None and not self.stop_requested.wait(swarm_launcher.WATCH):
            try:
                code = self._outcome()
            except docker_engine.ENGINE_ERRORS as e:
                swarm_launcher.say(f"cannot see the task: {docker_engine.short(e)}")
        self.ended.set()
        self._close_stream()
        follower.join(FOLLOW_JOIN)
        if code is not None:
            self._rest_of_log()
        if self.failed is not None:
            self._tell(self._exit_reason(*self.failed))
        self._remove()
        return EXIT_STOPPED if code is None else code

    def _ensure_service(self) -> None:
        if not self.opts.image:
            raise docker_engine.EngineError("the release has no image (it was built for "
                                            "another runtime): push again")
        image = self._publish()
        definition = self._definition(image)
        definition["restart_policy"] = RestartPolicy(condition="none")
        definition["log_driver_options"] = dict(LOG_OPTIONS)
        # Its name is new: one found is a stale run's, never adopted.
        swarm.remove_service(self.client, self.opts.service)
        self.created = time.time()
        self.client.services.create(image, **definition)

    def _drop_stdin(self) -> None:
        said = False
        try:
            while os.read(0, 65536):
                if not said:
                    said = True
                    swarm_launcher.say("a swarm task has no stdin: what was sent to it is "
                                       "dropped")
        except OSError:
            pass

    # -- its task ----------------------------------------------------------

    def _outcome(self) -> int | None:
        """The exit status once the task ended; None while it is to run or runs."""
        tasks = self._tasks(self.opts.service)
        if not tasks and not self._exists():
            swarm_launcher.say("its service was removed (the swarm sweep, or by hand)")
            return EXIT_ENGINE
        for t in tasks:
            status = t.get("Status") or {}
            state = status.get("State", "")
            err = status.get("Err") or ""
            if state not in swarm_launcher.ENDED:
                if state == "pending" and err and err != self.waiting_said:
                    self.waiting_said = err
                    swarm_launcher.say(f"waiting for a node: {err}")
                continue
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            if state == "complete":
                return 0 if code is None else int(code)
            if any(words in err for words in NOT_FOUND) and "exec" in err:
                swarm_launcher.say(f"{self.opts.command[0]}: command not found in the image")
                return EXIT_NOT_FOUND
            if state == "failed" and code:
                self.failed = (t, int(code))      # why: once the rest of its log is read
                return int(code)
            swarm_launcher.say(f"its task {state}: {err or status.get('Message') or 'no reason'}")
            return EXIT_ENGINE
        return None

    def _exists(self) -> bool:
        try:
            self.client.api.inspect_service(self.opts.service)
        except docker.errors.NotFound:
            return False
        return True

    # -- its output --------------------------------------------------------

    def _follow(self) -> None:
        """The service's log, as it comes, to our stdout and stderr."""
        while not self.ended.is_set():
            try:
                self._copy(follow=True)
            except Exception:   # noqa: BLE001 (urllib3's too) shut by run(), or broken
                pass            # opened again, what it brought already is not copied twice
            self.ended.wait(0.5)

    def _rest_of_log(self) -> None:
        """What the stream had not brought when the task ended: the whole log
        again, less what was copied (the task's container has ended, its log
        is complete)."""
        try:
            self._copy(follow=False)
        except docker.errors.NotFound:
            pass            # removed by another: what it said is gone with it
        except (*docker_engine.ENGINE_ERRORS, ValueError) as e:
            swarm_launcher.say(f"cannot read the rest of its output: {docker_engine.short(e)}")

    def _copy(self, follow: bool) -> None:
        api = self.client.api
        response = api._get(api._url("/services/{0}/logs", self.opts.service), stream=True,
                            params={"follow": follow, "stdout": True, "stderr": True,
                                    "timestamps": True})
        api._raise_for_status(response)
        if follow:
            self.stream = api._get_raw_response_socket(response)
            if self.ended.is_set():
                response.close()
                return
        seen = collections.Counter()
        try:
            while True:
                header = response.raw.read(HEADER)
                if len(header) < HEADER:
                    return
                stream, length = struct.unpack(">BxxxL", header)
                frame = response.raw.read(length) if length else b""
                # Each frame is one line, stamped: the same line twice (the
                # stream opened again, or the rest read) is the same frame.
                seen[(stream, frame)] += 1
                if seen[(stream, frame)] <= self.written[(stream, frame)]:
                    continue
                self.written[(stream, frame)] += 1
                _, _, text = frame.partition(b" ")
                told = swarm_oom.parse(text)
                if told is not None:
                    with self.kills_lock:
                        new = self.kills.see(text)
                    if new and not told[2]:
                        swarm_launcher.say("a process of its task was killed: " + (
                            swarm_oom.exit_reason(1, self.opts.memory, True) or "out of memory"))
                    continue
                if stream == 2 and TINI_EXEC_FAILED.match(text):
                    # The init's words for a command the image lacks: ours, as docker's.
                    text = f"[swarm] {self.opts.command[0]}: command not found in the " \
                           "image\n".encode()
                fd = 2 if stream == 2 else 1
                while text:
                    text = text[os.write(fd, text):]
        finally:
            response.close()

    def _count_kills(self) -> None:
        pass            # no shim counts a one-off's

    def _close_stream(self) -> None:
        """The followed log's socket shut: a read blocked on it returns."""
        stream = self.stream
        if stream is not None:
            try:
                getattr(stream, "_sock", stream).shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass        # closed already


def main(argv: list[str] | None = None) -> None:
    opts = swarm_launcher.parse(sys.argv[1:] if argv is None else argv)
    sys.exit(OneOff(opts, dict(os.environ)).run())


if __name__ == "__main__":
    main()
