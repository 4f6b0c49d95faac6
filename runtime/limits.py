"""Resource limits for builds and one-off commands, so one app cannot take the host down.

`preexec(memory_bytes, cpu_seconds, nofile)` makes a subprocess `preexec_fn`
that puts the child in a new session (its own process group, no terminal)
and sets RLIMIT_DATA, RLIMIT_CPU and RLIMIT_NOFILE on it. Memory is capped
with RLIMIT_DATA, not RLIMIT_AS: the address-space limit counts reservations
that are never used, and V8 reserves gigabytes of them (node does not even
start under a 512 MiB RLIMIT_AS, and WebAssembly fails under 2 GiB), while
RLIMIT_DATA counts the private memory a process actually makes writable:
the heap, malloc's mmaps, a runtime's committed pages. `run_limited` runs a
command under those limits and a wall-clock timeout, streams its combined
stdout and stderr line by line to a callback as they arrive, and returns its
exit status (negative: killed by that signal).

It must never leave anything of the command running when it returns or
raises: on timeout, on an exception from the callback, and after a normal
exit, whatever is left in the command's process group is SIGKILLed. Turning
a timeout or a failure into a user's message is the caller's job.

With `cgroup=(data, kind, limits)` the command runs in a cgroup of its own
(runtime.cgroups.transient) under those limits, and when it is done the
whole cgroup is killed and removed: what called setsid() goes too. A
command that failed after the kernel OOM-killed part of it raises
MemoryError("out of memory (limit 512M)") rather than return its status.
"""
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable

from runtime import cgroups, privileges
from runtime.shimlog import LineSplitter

READ_SIZE = 64 * 1024
# How long output may still come from a pipe after the command exited and
# its group was killed (a process that left the group may hold it open).
DRAIN_AFTER_EXIT = 1.0


def preexec(memory_bytes: int | None, cpu_seconds: int | None, nofile: int | None,
            user: tuple[int, int] | None = None, enter=None):
    """A preexec_fn: new session, then the limits that are not None, then
    (user: (uid, gid)) runtime.privileges.drop to that user, last, since
    raising a hard limit needs root.

    memory_bytes caps private writable memory (allocations fail past it,
    so runtimes report out of memory instead of the host swapping); cpu_seconds
    caps CPU time (SIGXCPU at the limit, SIGKILL a second later); nofile caps
    open descriptors (never above the current hard limit). Do not combine
    with start_new_session: this already makes the new session.
    """
    limits = []
    if memory_bytes is not None:
        limits.append((resource.RLIMIT_DATA, (memory_bytes, memory_bytes)))
    if cpu_seconds is not None:
        limits.append((resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1)))
    if nofile is not None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY:
            nofile = min(nofile, hard)
        limits.append((resource.RLIMIT_NOFILE, (nofile, nofile)))

    def setup():
        if enter is not None:
            enter()   # a cgroup's preexec: first, while the child may still join it
        os.setsid()
        for which, value in limits:
            resource.setrlimit(which, value)
        if user is not None:
            privileges.drop(*user)
    return setup


def run_limited(argv, *, cwd, env, timeout: float | None, memory_bytes: int | None,
                on_line, check: Callable[[], None] | None = None,
                cpu_seconds: int | None = None, nofile: int | None = None,
                user: tuple[int, int] | None = None,
                cgroup: tuple | None = None) -> int:
    """Run argv with limits, calling on_line(str) per output line; return its exit status.

    stdin is /dev/null; stdout and stderr are merged. Raises TimeoutError
    when the command (with anything still holding its output open) is not
    done after timeout seconds, OSError when it cannot be started (missing
    program or cwd), and whatever on_line raises, or check: called every
    tenth of a second or so while the command runs, it may stop it (a
    build's disk limit does); in each case its process group has been
    killed first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    group = cgroups.transient(*cgroup) if cgroup is not None else None
    enter = group.preexec() if group is not None else None
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, close_fds=True,
            preexec_fn=preexec(memory_bytes, cpu_seconds, nofile, user, enter=enter))
    except BaseException:
        if group is not None:
            group.remove()   # it cannot start: its cgroup goes with it
        raise
    try:
        _stream(proc, deadline, on_line, check)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        if group is not None:
            oom = group.oom_kills()
            group.remove()
    if group is not None and oom and proc.returncode != 0:
        raise MemoryError(group.out_of_memory())
    return proc.returncode


def _stream(proc: subprocess.Popen, deadline: float | None, on_line, check) -> None:
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    splitter = LineSplitter()
    leftovers_killed = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if not leftovers_killed and proc.poll() is not None:
                # Nothing may outlive the command; a background process
                # holding the pipe would keep us reading until the timeout.
                _kill_group(proc.pid)
                leftovers_killed = True
                drained = time.monotonic() + DRAIN_AFTER_EXIT
                deadline = drained if deadline is None else min(deadline, drained)
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if wait <= 0:
                break
            if check is not None:
                check()
            if not selector.select(wait):
                continue
            data = os.read(fd, READ_SIZE)
            for line in splitter.feed(data) if data else splitter.close():
                on_line(line)
            if not data:
                break
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        proc.wait(remaining)  # it may have closed its output and kept running
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{argv0(proc)} did not finish in time") from None
    _kill_group(proc.pid)


def argv0(proc: subprocess.Popen) -> str:
    args = proc.args
    return os.path.basename(args[0]) if args else "command"


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
