"""Dropping root for an app's processes: its own uid and gid, no capabilities,
no_new_privs.

`drop(uid, gid)` is meant for a child between fork and exec (a
`preexec_fn`, after the caller's own setup such as setsid): it empties the
capability bounding set, clears the supplementary groups, sets the gid and
then the uid (real, effective and saved, so nothing can switch back), and
sets PR_SET_NO_NEW_PRIVS, so no setuid binary or file capability gives
anything back after exec. Changing every uid from 0 to non-zero clears the
permitted, effective and ambient sets by itself; dropping the bounding set
first means not even a file capability could refill them. `check()` reads
/proc/self/status and says what is left, for tests and a caller's assert.

A process that is not root cannot drop anything and needs not: `drop` is
then a no-op unless asked for another uid than its own, which fails. The
platform's own daemons never call this; only their children do.
"""
from __future__ import annotations

import ctypes
import os

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"
DEFAULT_LAST_CAP = 40

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def _last_cap() -> int:
    try:
        with open(CAP_LAST_CAP_FILE) as f:
            return int(f.read())
    except (OSError, ValueError):
        return DEFAULT_LAST_CAP


# Read before any fork: a preexec_fn should not open files it needs not.
LAST_CAP = _last_cap()


def _prctl(option: int, arg: int = 0) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def drop(uid: int, gid: int) -> None:
    """Become uid:gid for good, with no capabilities and no_new_privs (see module doc)."""
    if os.geteuid() != 0:
        if (os.getuid(), os.getgid()) != (uid, gid):
            raise PermissionError(f"cannot become uid {uid}: the platform is not root")
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        return
    for cap in range(LAST_CAP + 1):
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != 22:   # EINVAL: a capability this kernel does not know
                raise
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Paranoia that costs nothing: a failed setuid must never leave root running app code.
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        os._exit(126)


def preexec(uid: int, gid: int):
    """A preexec_fn doing only the drop (own session included)."""
    def setup():
        os.setsid()
        drop(uid, gid)
    return setup


def check(status_path: str = "/proc/self/status") -> dict[str, int]:
    """The calling process's uids, gids, capability sets and no_new_privs, as
    numbers: {"Uid": real uid, "Gid": ..., "CapEff": ..., "CapPrm": ...,
    "CapBnd": ..., "CapInh": ..., "CapAmb": ..., "NoNewPrivs": 0 or 1}."""
    out: dict[str, int] = {}
    with open(status_path) as f:
        for line in f:
            key, _, value = line.partition(":")
            value = value.strip()
            if key in ("Uid", "Gid"):
                out[key] = int(value.split()[0])
            elif key.startswith("Cap"):
                out[key] = int(value, 16)
            elif key == "NoNewPrivs":
                out[key] = int(value)
    return out
