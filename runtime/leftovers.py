"""Finds and kills the processes a dead shim left behind.

A shim killed with -9 takes its direct children with it (PR_SET_PDEATHSIG),
but not their children: gunicorn's workers, for one, keep the instance's
listening socket open and go on serving until they notice their master is
gone, which keeps the replacement from binding the port. Every process an
instance runs carries a tag in its environment (`DOTCLOUD_INSTANCE_TAG`, one
value per data directory and instance id, inherited by everything it
starts), so the runtime can find them all in /proc before it starts a new
shim for that instance: it asks them to stop (SIGTERM: a worker finishes
the request in hand), and kills what is left after a short grace.

It must never signal a process whose environment it has not just read and
found the exact tag in, nor its own process.
"""
import hashlib
import os
import signal
from pathlib import Path

TAG = "DOTCLOUD_INSTANCE_TAG"


def tag(data: Path, instance_id: int) -> str:
    """The instance's tag: the same data directory and id give the same value."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(data))).hexdigest()[:12]
    return f"{digest}-{instance_id}"


def find(value: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids of live processes whose environment holds TAG=value."""
    needle = b"\0" + f"{TAG}={value}".encode() + b"\0"
    found = []
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, a kernel thread, or not ours to read
        if needle in b"\0" + environ + b"\0":
            found.append(int(entry.name))
    return found


def send(value: str, signum: int = signal.SIGKILL) -> list[int]:
    """Signal every process tagged with value; return the pids signalled."""
    sent = []
    for pid in find(value):
        try:
            os.kill(pid, signum)
            sent.append(pid)
        except ProcessLookupError:
            pass
    return sent
