"""What `up` finds of an earlier `up` for the same data directory.

An `up` that is still running is a reason to refuse to start a second one.
An `up` that was killed (kill -9, a crash, an OOM kill) leaves its daemons
running unsupervised, holding the SSH and HTTP ports: the new `up` stops
them first. The runtime is killed outright, as after any kill -9 of it: the
shims and the apps keep running and the new runtime adopts them. The SSH
server and the router get SIGTERM, so a push or a request in progress may
finish, and SIGKILL after the grace period.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from . import logs
from .datadir import DataDir
from .errors import UsageError

log = logs.get("supervisor")
POLL = 0.05
KILL_WAIT = 5.0


def take_over(data: Path, grace: float) -> None:
    """Refuse if another `up` runs on this data; stop the daemons a dead one left."""
    try:
        info = json.loads(DataDir(data).daemon_info("up").read_text())
        up_pid = int(info["pid"])
        daemons = {str(k): int(v) for k, v in dict(info.get("daemons", {})).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return
    # the up.json in this data directory names it: its --data may be relative
    if up_pid != os.getpid() and _ours(up_pid, None, "up"):
        raise UsageError(f"another up is running for {data} (pid {up_pid})")
    left = {name: pid for name, pid in daemons.items() if _ours(pid, data, name)}
    if not left:
        return
    log.warning("stale_daemons", daemons=left, up_pid=up_pid)
    for name, pid in left.items():
        _signal(pid, signal.SIGKILL if name == "runtime" else signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_ours(p, data, n) for n, p in left.items()):
        time.sleep(POLL)
    for name, pid in left.items():
        if _ours(pid, data, name):
            log.warning("daemon_kill", daemon=name, pid=pid)
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline and any(_ours(p, data, n) for n, p in left.items()):
        time.sleep(POLL)     # a SIGKILLed process is gone at once, or a zombie of init's


def _ours(pid: int, data: Path | None, command: str) -> bool:
    """pid is a live dotcloud `--data DATA COMMAND` process (not a zombie, not a
    stranger that got the number since)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    words = [w.decode(errors="replace") for w in argv]
    if data is None:
        return command in words and any("dotcloud" in w for w in words)
    return command in words and str(data) in words


def _signal(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)       # each daemon leads its own session and group
    except ProcessLookupError:
        pass
