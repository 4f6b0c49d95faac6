"""Control groups: one per instance, build step, hook or `run` command, under its limits.

A process group bounds nothing: a child that calls setsid() leaves it, and
rlimits count per process, so a fork bomb or many mid-sized processes pass
them. A cgroup holds every descendant whatever it does, and the kernel
enforces memory (`512M`: past it the group's processes are OOM-killed, and
the group counts it), CPU time (`cpus: 1.5`: a CFS quota) and the number of
tasks (`processes: 256`: fork fails past it).

`create(data, name, limits)` makes (or takes over) the group
`dotcloud/<data id>/<name>` in each hierarchy this host has: cgroup v1
(memory, cpu, pids and freezer each mounted, as here) or v2 (the unified
tree at /sys/fs/cgroup). The data id keeps two platforms on one host apart.
Names are deterministic, so a daemon killed with -9 leaves groups that the
next `create` of the same name empties and starts afresh: `instance-<id>`
for an instance's processes (the shim makes it), and for a command that
belongs to a process (a build step, a hook, a `run`), `transient()` names
it after the owner's pid and start time, so `sweep` can tell which owners
are dead and kill what their groups still hold.

A child enters its group in its preexec hook (`group.preexec()`), before it
execs, so it cannot fork anything outside first. `kill_all` freezes the
group (v1 freezer, v2 cgroup.freeze) or uses v2's cgroup.kill, SIGKILLs
every member, thaws, and repeats until the group is empty: a fork bomb
cannot outrun it. `oom_kills` reads the kernel's count of OOM kills in the
group (v1 memory.oom_control `oom_kill`, v2 memory.events `oom_kill`).

Without cgroups (not root, nothing mounted, or DOTCLOUD_CGROUPS=0 in the
environment) `create` returns None and the callers keep their rlimits and
process groups. It never signals a process
that is not a member of a group it made.
"""
from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dotcloud.resources import Limits, format_memory

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
V2_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
KILL_TIMEOUT = 10.0
POLL = 0.01
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# transient(): KIND-PID.STARTTIME-SEQ, the owner's identity in the name.
TRANSIENT_RE = re.compile(r"[a-z]+-([0-9]+)\.([0-9]+)-[0-9]+")
# A live owner's group left empty this long was lost (its command never
# started, say): a running command's group is never empty.
STALE_EMPTY = 60.0


class CgroupError(OSError):
    """A group could not be made or changed; the message is one line."""


@dataclass(frozen=True)
class Hierarchies:
    """Where this host's cgroup trees are: version 1 (controller -> mount) or 2."""
    version: int
    mounts: tuple[tuple[str, Path], ...]    # v1: (controller, mount); v2: (("", root),)

    def dirs(self, relative: str) -> dict[str, Path]:
        return {c: m / relative for c, m in self.mounts}


_found: list = []


def hierarchies() -> Hierarchies | None:
    """This host's cgroup trees we may write to (None: no usable cgroups)."""
    if not _found:
        _found.append(_discover())
    return _found[0]


def _discover() -> Hierarchies | None:
    if os.environ.get("DOTCLOUD_CGROUPS") == "0":
        return None   # the operator's choice (and the benchmark's "before")
    if os.geteuid() != 0:
        return None   # creating groups needs root (or a delegated tree: not ours)
    controllers = ROOT / "cgroup.controllers"
    if controllers.exists():
        have = controllers.read_text().split()
        if "memory" in have and "pids" in have:
            return Hierarchies(2, (("", ROOT),))
    mounts = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPEROPTIONS
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] != "cgroup" \
                or fields[3] != "/":
            continue
        for option in tail[2].split(","):
            if option in V1_CONTROLLERS and option not in mounts:
                mounts[option] = Path(fields[4].replace("\\040", " "))
    if "memory" not in mounts or "pids" not in mounts:
        return None
    return Hierarchies(1, tuple((c, mounts[c]) for c in V1_CONTROLLERS if c in mounts))


def data_id(data: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(data))).hexdigest()[:12]


def parent_path(data: Path) -> str:
    return f"dotcloud/{data_id(data)}"


class Group:
    """One cgroup, in every hierarchy (mutable only in the kernel)."""

    def __init__(self, where: Hierarchies, relative: str, limits: Limits):
        self.where = where
        self.relative = relative
        self.name = relative.rsplit("/", 1)[-1]
        self.limits = limits
        self.dirs = where.dirs(relative)

    def __repr__(self) -> str:
        return f"Group({self.relative!r}, {self.limits.describe()})"

    # -- members -----------------------------------------------------------

    def _procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def preexec(self):
        """A function for a child's preexec_fn: it moves the child into the group.

        Run it before anything that drops privileges (writing cgroup.procs
        needs the platform's own). On failure the child exits 126 rather
        than run unbounded.
        """
        files = self._procs_files()

        def join():
            try:
                for path in files:
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.write(fd, b"0")   # "0": the writing process itself
                    finally:
                        os.close(fd)
            except OSError:
                os._exit(126)
        return join

    def add(self, pid: int) -> None:
        """Move an existing process in (its children made before stay where they are)."""
        for path in self._procs_files():
            _write(Path(path), str(pid))

    def pids(self) -> list[int]:
        """Members (every process of the group, in any hierarchy)."""
        found = set()
        for d in self.dirs.values():
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                continue
        return sorted(found)

    # -- what the kernel counted -------------------------------------------

    def oom_kills(self) -> int:
        """How many processes of the group the kernel killed for its memory limit."""
        if self.where.version == 2:
            text = _read(self.dirs[""] / "memory.events")
        else:
            text = _read(self.dirs["memory"] / "memory.oom_control") \
                if "memory" in self.dirs else ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def memory_peak(self) -> int | None:
        d = self.dirs.get("" if self.where.version == 2 else "memory")
        if d is None:
            return None
        text = _read(d / ("memory.peak" if self.where.version == 2
                          else "memory.max_usage_in_bytes")).strip()
        return int(text) if text.isdigit() else None

    def out_of_memory(self) -> str:
        """The reason to show for a process the kernel killed for memory."""
        limit = self.limits.memory_bytes
        return "out of memory" + (f" (limit {format_memory(limit)})" if limit else "")

    # -- ending ------------------------------------------------------------

    def kill_all(self, timeout: float = KILL_TIMEOUT) -> bool:
        """SIGKILL every member, forks in flight included; True once it is empty."""
        deadline = time.monotonic() + timeout
        kill_file = self.dirs.get("", Path("/nonexistent")) / "cgroup.kill"
        while True:
            members = self.pids()
            if not members:
                return True
            if time.monotonic() >= deadline:
                return False
            if kill_file.exists():
                _write(kill_file, "1", missing_ok=True)
            else:
                self._freeze(True)
                try:
                    for pid in self.pids():
                        _kill(pid)
                finally:
                    # A frozen process does not die until it is thawed.
                    self._freeze(False)
            time.sleep(POLL)

    def _freeze(self, frozen: bool) -> None:
        if self.where.version == 2:
            _write(self.dirs[""] / "cgroup.freeze", "1" if frozen else "0", missing_ok=True)
            return
        state = self.dirs.get("freezer")
        if state is None:
            return
        _write(state / "freezer.state", "FROZEN" if frozen else "THAWED", missing_ok=True)
        if frozen:
            # FREEZING until every task has stopped; bounded, a kill still helps.
            end = time.monotonic() + 1.0
            while _read(state / "freezer.state").strip() == "FREEZING" \
                    and time.monotonic() < end:
                time.sleep(POLL)

    def remove(self, timeout: float = KILL_TIMEOUT) -> bool:
        """Kill what is left and remove the group; True when it is gone."""
        self.kill_all(timeout)
        gone = True
        for d in self.dirs.values():
            gone &= _rmdir(d)
            # The data directory's parent goes with its last group (test
            # platforms come and go); create() makes it again when needed.
            try:
                d.parent.rmdir()
            except OSError:
                pass
        return gone


def create(data: Path, name: str, limits: Limits | None,
           where: Hierarchies | None = None) -> Group | None:
    """The group `name` for data directory `data`, emptied and set to `limits`.

    A leftover of the same name (a daemon killed with -9) has its processes
    killed and is made afresh, so its counters start at zero. None when the
    host has no usable cgroups. Raises CgroupError when it cannot be made.
    `where`: other trees than this host's usual ones (a second cgroup2 mount).
    """
    where = where or hierarchies()
    if where is None:
        return None
    if not NAME_RE.fullmatch(name):
        raise CgroupError(f"bad cgroup name {name!r}")
    limits = limits or Limits()
    parent = parent_path(data)
    relative = f"{parent}/{name}"
    group = Group(where, relative, limits)
    try:
        if any(d.exists() for d in group.dirs.values()):
            group.remove()
        for attempt in (1, 2):
            _ensure_parents(where, parent)
            try:
                for d in group.dirs.values():
                    d.mkdir(exist_ok=True)
                break
            except FileNotFoundError:
                if attempt == 2:   # the parent went with another group's removal: again
                    raise
        _apply(group, limits)
    except OSError as e:
        raise CgroupError(f"cannot set up cgroup {relative}: {e.strerror or e}") from None
    return group


def existing(data: Path, name: str) -> Group | None:
    """The group `name` if it exists (limits unknown), without touching it."""
    where = hierarchies()
    if where is None:
        return None
    group = Group(where, f"{parent_path(data)}/{name}", Limits())
    return group if any(d.exists() for d in group.dirs.values()) else None


def transient(data: Path, kind: str, limits: Limits | None) -> Group | None:
    """A group owned by this process (a build step, a hook, a `run`), after
    sweeping away the groups of owners that died without removing theirs."""
    if hierarchies() is None:
        return None
    sweep(data)
    return create(data, f"{kind}-{os.getpid()}.{_start_time(os.getpid())}-{next(_seq)}", limits)


# next() of a count is atomic: two threads of one daemon never get one name.
_seq = itertools.count(1)


def names(data: Path) -> list[str]:
    """The groups of data directory `data`, in any hierarchy."""
    where = hierarchies()
    if where is None:
        return []
    found = set()
    for d in where.dirs(parent_path(data)).values():
        try:
            found.update(e.name for e in os.scandir(d) if e.is_dir())
        except FileNotFoundError:
            continue
    return sorted(found)


def sweep(data: Path) -> list[str]:
    """Kill and remove transient groups whose owner is dead, and remove those
    of live owners left empty for STALE_EMPTY seconds; return their names."""
    where = hierarchies()
    if where is None:
        return []
    removed = []
    for name in names(data):
        match = TRANSIENT_RE.fullmatch(name)
        if match is None:
            continue
        pid, started = int(match.group(1)), int(match.group(2))
        group = Group(where, f"{parent_path(data)}/{name}", Limits())
        if _start_time(pid) == started and not _stale(group):
            continue   # the owner lives: its group is in use
        if group.remove():
            removed.append(name)
    return removed


def _stale(group: Group) -> bool:
    try:
        made = min(d.stat().st_mtime for d in group.dirs.values() if d.exists())
    except (OSError, ValueError):
        return False
    return time.time() - made > STALE_EMPTY and not group.pids()


def _ensure_parents(where: Hierarchies, parent: str) -> None:
    for controller, mount in where.mounts:
        path = mount
        for part in parent.split("/"):
            if where.version == 2:
                # A v2 child gets only the controllers its parent hands down.
                _enable_controllers(path)
            path = path / part
            path.mkdir(exist_ok=True)
        if where.version == 2:
            _enable_controllers(path)


def _enable_controllers(path: Path) -> None:
    have = set(_read(path / "cgroup.controllers").split())
    wanted = [c for c in V2_CONTROLLERS if c in have]
    on = set(_read(path / "cgroup.subtree_control").split())
    missing = [c for c in wanted if c not in on]
    if missing:
        _write(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _apply(group: Group, limits: Limits) -> None:
    d = group.dirs
    if group.where.version == 2:
        root = d[""]
        if limits.memory_bytes is not None:
            _write(root / "memory.max", str(limits.memory_bytes))
            # No swap beyond the limit: the limit is what the app may use.
            _write(root / "memory.swap.max", "0", missing_ok=True)
        if limits.cpus is not None:
            _write(root / "cpu.max", f"{max(1000, int(limits.cpus * CPU_PERIOD_US))} "
                                     f"{CPU_PERIOD_US}", missing_ok=True)
        if limits.processes is not None:
            _write(root / "pids.max", str(limits.processes))
        return
    if limits.memory_bytes is not None and "memory" in d:
        _write(d["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
        _write(d["memory"] / "memory.memsw.limit_in_bytes", str(limits.memory_bytes),
               missing_ok=True)
    if limits.cpus is not None and "cpu" in d:
        _write(d["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(d["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(limits.cpus * CPU_PERIOD_US))))
    if limits.processes is not None and "pids" in d:
        _write(d["pids"] / "pids.max", str(limits.processes))


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _write(path: Path, text: str, missing_ok: bool = False) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rmdir(path: Path) -> bool:
    # An emptied group may stay busy a moment while its last tasks finish exiting.
    for _ in range(200):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY:
                return False
            time.sleep(POLL)
    return False


def instance_name(instance_id: int) -> str:
    return f"instance-{instance_id}"


def shim_spec(data: Path, instance_id: int, limits: Limits) -> dict:
    """The `cgroup` field of an instance's shim spec (runtime.shimspec.CgroupSpec)."""
    return {"data": str(os.path.abspath(data)), "name": instance_name(instance_id),
            "limits": limits.to_dict()}
