"""One supervised process of the shim: its bookkeeping, its start, its words.

`launch` starts a process the way the shim needs it: its own session and
process group, the spec's environment and nothing else, stdin on /dev/null,
stdout and stderr on non-blocking pipes, SIGHUP back to default, and
PR_SET_PDEATHSIG so that it is SIGKILLed when the shim dies. `Process` is
the shim's mutable record of one named process; `describe_exit` and
`seconds` word its events.

It decides nothing: when to start, signal or reap a process is the shim
loop's business, and nothing here ever waits.
"""
import os
import signal
import subprocess
from collections import deque

from runtime import privileges
from runtime.shimlog import LineSplitter
from runtime.shimspec import ProcessSpec

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
TAIL_LINES = 10
TAIL_CHARS = 500


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited status={code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def seconds(value: float) -> str:
    """2.0 -> '2.0', 0.05 -> '0.05': short, but exact enough for small test delays."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class Process:
    """Supervision state of one named process (mutable: it is the shim's bookkeeping)."""

    def __init__(self, spec: ProcessSpec, delay: float):
        self.spec = spec
        self.name = spec.name
        self.state = "starting"
        self.popen = None
        self.started_at = None
        self.started_mono = 0.0
        self.restarts = 0
        self.unstable = 0  # restarts since it last ran for stable_after seconds
        self.delay = delay
        self.restart_at = None
        self.stable_at = None
        self.last_exit = None
        self.last_exit_at = None
        self.last_exit_reason = None  # how it ended, in words ("out of memory (limit 512M)")
        self.leftover_group = None  # the group of the last run, sent SIGTERM after it exited
        self.tail = deque(maxlen=TAIL_LINES)

    def status(self) -> dict:
        return {"pid": self.popen.pid if self.popen else None, "state": self.state,
                "started_at": self.started_at, "restarts": self.restarts,
                "last_exit": self.last_exit, "last_exit_at": self.last_exit_at,
                "last_exit_reason": self.last_exit_reason,
                "last_lines": list(self.tail)}


class Stream:
    """The read end of one process's stdout or stderr pipe."""

    def __init__(self, fd: int, process: Process):
        self.fd = fd
        self.process = process
        self.splitter = LineSplitter()


def launch(spec: ProcessSpec, libc,
           user: tuple[int, int] | None = None,
           enter=None) -> tuple[subprocess.Popen, list[int]]:
    """Start spec's process; return it and the read ends of its stdout and stderr.

    enter: called in the child first, before anything else (the instance's
    cgroup's `preexec`, which needs the shim's privileges).

    Raises OSError, SubprocessError or ValueError when it cannot be started
    (missing program or directory, bad environment); nothing is left open then.
    """
    pipes = [os.pipe(), os.pipe()]
    try:
        popen = subprocess.Popen(
            list(spec.argv), cwd=spec.cwd, env=dict(spec.env),
            stdin=subprocess.DEVNULL, stdout=pipes[0][1], stderr=pipes[1][1],
            close_fds=True, start_new_session=True, preexec_fn=_child_setup(libc, user, enter))
    except BaseException:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        raise
    for r, w in pipes:
        os.close(w)
        os.set_blocking(r, False)
    return popen, [r for r, _ in pipes]


def _child_setup(libc, user: tuple[int, int] | None = None, enter=None):
    prctl = libc.prctl
    shim_pid = os.getpid()

    def setup():
        if enter is not None:
            enter()
        # Ignored signals survive exec; the app gets SIGHUP as usual.
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if user is not None:
            # First: a change of uid clears PR_SET_PDEATHSIG. The shim stays root.
            privileges.drop(*user)
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != shim_pid:
            os.kill(os.getpid(), signal.SIGKILL)  # the shim died before prctl
    return setup


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False when it has no process left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a member changed its user: it still exists
    return True
