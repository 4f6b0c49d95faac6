"""Control of instance shims, for the runtime daemon: start, find, stop.

`spawn` starts `python -m runtime.shim SPEC_PATH` detached: a new session,
stdin and stdout on /dev/null, stderr appended to a file of the instance
(cut to its last ERR_KEEP bytes at a start once past ERR_MAX, each start
marked), no inherited descriptors, directory `/`, so it outlives the daemon
and no terminal signal reaches it; `last_stderr` gives the last lines the
latest shim wrote there (why it died, when it did). The shim is still the
daemon's child while the daemon lives, so the daemon must reap it like any
child: `os.waitpid(-1, os.WNOHANG)` in a loop on SIGCHLD. No
`subprocess.Popen` object is kept (one dropped unreaped would later be
polled by pid, and pids are reused). After a daemon restart the shims are
no longer its children; `alive` finds them again from their pid files, with
an identity check so a reused pid is never taken for a shim.

It must never signal a pid it has not just checked or been given by the
caller, and never build a shell command.
"""
import os
import signal
import sys
import time
from pathlib import Path

from dotcloud.fsutil import read_json, write_atomic

# The directory holding the `runtime` package, so `-m runtime.shim` resolves
# whatever the daemon's working directory or installation is.
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
POLL = 0.05
ERR_MAX = 256 * 1024
ERR_KEEP = 64 * 1024
ERR_MARK = "--- shim started "
ERR_LINES = 20


def spawn(spec_path: Path, stderr: Path | None = None) -> int:
    """Start a detached shim for spec_path and return its pid (the caller reaps it).
    Its stderr goes to the file `stderr` (else /dev/null)."""
    spec = os.path.abspath(spec_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "runtime.shim", spec]
    err = _open_stderr(Path(stderr)) if stderr is not None else None
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, flags, 0)
               for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY))]
    actions.append((os.POSIX_SPAWN_DUP2, err, 2) if err is not None else
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0))
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
    try:
        return os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
    finally:
        if err is not None:
            os.close(err)


def _open_stderr(path: Path) -> int:
    """The file, appended to, its start marked; cut to its tail when too big."""
    try:
        if path.stat().st_size > ERR_MAX:
            with open(path, "rb") as f:
                f.seek(-ERR_KEEP, os.SEEK_END)
                tail = f.read()
            write_atomic(path, tail[tail.find(b"\n") + 1:], mode=0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.write(fd, f"{ERR_MARK}{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
             .encode())
    return fd


def last_stderr(path: Path, lines: int = ERR_LINES) -> list[str]:
    """The last lines the latest shim wrote to its stderr file (none: none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - ERR_KEEP))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    mark = text.rfind(ERR_MARK)
    own = text[text.find("\n", mark) + 1:] if mark >= 0 else text
    return [line for line in own.splitlines() if line.strip()][-lines:]


def _inheritable_fds() -> list[int]:
    """Descriptors above stdio that would cross exec (Python's own never do)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return fds


def alive(pid_path: Path, spec_path: Path) -> int | None:
    """The shim's pid if pid_path names a live shim for spec_path, else None."""
    try:
        pid = int(Path(pid_path).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return None
    # A zombie's cmdline is empty, so a dead-but-unreaped shim is not alive.
    if b"runtime.shim" in args and os.fsencode(os.path.abspath(spec_path)) in args:
        return pid
    return None


def stop(pid: int) -> None:
    """Ask the shim to stop its processes gracefully and exit."""
    _send(pid, signal.SIGTERM)


def kill(pid: int) -> None:
    """Kill the shim at once; its direct children die with it (PDEATHSIG)."""
    _send(pid, signal.SIGKILL)


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def read_status(status_path: Path) -> dict | None:
    """The shim's last status, or None when missing or unreadable."""
    status = read_json(status_path)
    return status if isinstance(status, dict) else None


def wait_stopped(pid_path: Path, spec_path: Path, timeout: float) -> bool:
    """Wait until no shim for spec_path is alive; False if one still is after timeout."""
    deadline = time.monotonic() + timeout
    while alive(pid_path, spec_path) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def reap_exited():
    """Yield (pid, exit code) for every child that has exited, without blocking
    (negative codes are signals). For a SIGCHLD-driven loop."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, os.waitstatus_to_exitcode(status)
