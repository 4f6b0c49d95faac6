"""Whether a swarm task was killed for memory: told from inside the task.

The swarm reports a task the kernel killed for its memory limit as it would
any SIGKILL: `task: non-zero exit (137)`, exit code 137, no word of memory,
and a process killed while the task lives on (a worker of gunicorn) not at
all. So a task's command runs under runtime/oom_watch.sh (handed over as a
swarm config, `config()`, run by the image's /bin/sh, `command()`), which
reads its container's own memory cgroup's OOM kill count every 2 s and, when
it grew, writes `dotcloud-oom-kill ID N` to the task's log (ID the task's,
N its kills so far; ` exit` at the end of the line when the count grew as
its command ended). No engine of the nodes is asked. An image without
/bin/sh (a Dockerfile's FROM scratch or distroless; `has_shell()`, asked of
the manager's engine, which has every release image) runs its command
unwatched.

`Kills` reads those lines out of the log (they are not the app's output);
`exit_reason()` gives the words the shim and `run` show: `out of memory
(limit 512M)` for a task that failed after a kill; a hedged line for exit
137 under a memory limit when the task's log could not be read; None when
the task was not killed, or was killed by something else.
"""
from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import docker
from docker.types import ConfigReference

from dotcloud.resources import format_memory
from runtime import docker_engine

KILLED = 137            # 128 + SIGKILL
SCRIPT = Path(__file__).with_name("oom_watch.sh")
TARGET = "/dotcloud-oom-watch.sh"     # where the task finds it
SHELL = "/bin/sh"
MARKER = re.compile(rb"^dotcloud-oom-kill (\S+) (\d+)( exit)?\r?\n?$")
HEADER = 8              # a log frame's: stream, 3 zero bytes, length
TAIL = 200              # lines of an ended task's log read for its last word


def parse(line: bytes | str) -> tuple[str, int, bool] | None:
    """(task id, kills so far, said at the command's end) of a marker line."""
    if isinstance(line, str):
        line = line.encode("utf-8", "replace")
    m = MARKER.match(line)
    if m is None:
        return None
    return m.group(1).decode(), int(m.group(2)), bool(m.group(3))


class Kills:
    """The OOM kills the watchers of one service's tasks told, each once."""

    def __init__(self):
        self.by_task: dict[str, int] = {}
        self.at_exit: set[str] = set()

    def see(self, line: bytes | str) -> int | None:
        """New kills told by this line (0: told already); None: not a marker."""
        told = parse(line)
        if told is None:
            return None
        task, count, at_exit = told
        if at_exit:
            self.at_exit.add(task)
        new = max(0, count - self.by_task.get(task, 0))
        self.by_task[task] = max(count, self.by_task.get(task, 0))
        return new

    @property
    def total(self) -> int:
        return sum(self.by_task.values())

    def of_lines(self, lines) -> set[str]:
        """The tasks these lines (an ended task's log) tell of."""
        tasks = set()
        for line in lines:
            if self.see(line) is not None:
                tasks.add(parse(line)[0])
        return tasks

    def killed_at_exit(self, tasks: set[str], code: int) -> bool:
        """Whether a task that ended with `code` was killed for memory: the
        watcher saw a kill as its command ended, or the command was killed
        (137) after kills told while it ran."""
        if code == 0:
            return False
        return any(t in self.at_exit or (code == KILLED and self.by_task.get(t))
                   for t in tasks)


def exit_reason(code: int | None, memory: int | None, killed: bool | None,
                unknown: str = "its log could not be read") -> str | None:
    """Why a task ended with `code` under a `memory` limit (bytes); `killed`
    is Kills.killed_at_exit, None when not known (`unknown` says why)."""
    if memory is None or not code:
        return None
    limit = format_memory(memory)
    if killed is None:
        return (f"killed by SIGKILL, perhaps out of memory (limit {limit}): {unknown}"
                if code == KILLED else None)
    return f"out of memory (limit {limit})" if killed else None


def task_log(client: docker.DockerClient, task_id: str) -> list[bytes] | None:
    """The last lines of an ended task's log (stdout and stderr); None when
    it cannot be read."""
    api = client.api
    try:
        response = api._get(api._url("/tasks/{0}/logs", task_id), stream=True,
                            params={"stdout": True, "stderr": True, "tail": str(TAIL)})
        api._raise_for_status(response)
    except (*docker_engine.ENGINE_ERRORS, ValueError):
        return None
    lines = []
    try:
        while True:
            header = response.raw.read(HEADER)
            if len(header) < HEADER:
                return lines
            _, length = struct.unpack(">BxxxL", header)
            lines.append(response.raw.read(length) if length else b"")
    except (*docker_engine.ENGINE_ERRORS, OSError, ValueError):
        return None
    finally:
        response.close()


def has_shell(client: docker.DockerClient, image: str, cache: Path | None = None) -> bool:
    """Whether `image` (on this engine) has /bin/sh to run the watcher; the
    answer kept in `cache` (a directory), by image id, when given."""
    known = cache / image.replace("sha256:", "").replace("/", "_") if cache else None
    if known is not None:
        try:
            return known.read_text().strip() == "yes"
        except OSError:
            pass
    api = client.api
    try:
        container = api.create_container(image, command=["true"], entrypoint=[])["Id"]
    except docker_engine.ENGINE_ERRORS:
        return True     # unknown here: the task will say if it cannot start
    try:
        api.get_archive(container, SHELL)[0].close()
        found = True
    except docker.errors.NotFound:
        found = False
    except docker_engine.ENGINE_ERRORS:
        return True
    finally:
        try:
            api.remove_container(container, force=True)
        except docker_engine.ENGINE_ERRORS:
            pass
    if known is not None:
        try:
            known.parent.mkdir(parents=True, exist_ok=True)
            known.write_text("yes\n" if found else "no\n")
        except OSError:
            pass
    return found


def command(argv: list[str]) -> list[str]:
    """The task's command: `argv` under the watcher."""
    return [SHELL, TARGET, *argv]


def _config_name(data_id: str, script: bytes) -> str:
    return f"dc-{data_id}-oom-watch-{hashlib.sha256(script).hexdigest()[:12]}"


def config(client: docker.DockerClient, labels: dict) -> ConfigReference:
    """The watcher as a swarm config (one per data directory and version of
    the script, shared by its services; made on first use), as the task
    mounts it."""
    data = SCRIPT.read_bytes()
    name = _config_name(labels.get(docker_engine.LABEL_DATA, "x"), data)
    try:
        found = client.configs.get(name)
    except docker.errors.NotFound:
        try:
            found = client.configs.create(name=name, data=data, labels=dict(labels))
        except docker.errors.APIError as e:
            if e.status_code != 409:        # made by another launcher meanwhile
                raise
            found = client.configs.get(name)
    return ConfigReference(found.id, name, filename=TARGET, uid="0", gid="0", mode=0o444)


def sweep(client: docker.DockerClient, data: Path) -> list[str]:
    """The watcher's configs of this data directory from older versions of
    the script that no service uses any more (the swarm refuses to remove
    one in use)."""
    data_id = docker_engine.data_id(data)
    current = _config_name(data_id, SCRIPT.read_bytes())
    removed = []
    for found in client.configs.list(filters={"label": f"{docker_engine.LABEL_DATA}={data_id}"}):
        name = found.name
        if name.startswith(f"dc-{data_id}-oom-watch-") and name != current:
            try:
                found.remove()
                removed.append(name)
            except docker_engine.ENGINE_ERRORS:
                pass        # still mounted by a task
    return removed
