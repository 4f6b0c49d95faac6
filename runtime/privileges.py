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

Given `tmp` (the app's own directory, DataDir.app_tmp), `drop` first gives
the child a private /tmp, while still root: a mount namespace of its own
(unshare CLONE_NEWNS), every mount made private so nothing leaks back to the
host, and that directory bind-mounted onto /tmp. Without it /tmp is the
host's sticky directory, where one app reads or plants what another leaves.
A directory of /tmp the app still needs (the data directory itself, when it
is under /tmp, as in tests) is bound back at the same path first (`keep`:
names of entries of /tmp). `private_tmp_works()` says once, from a probe
child, whether this host lets us (root in a container without
CAP_SYS_ADMIN does not): callers then pass no tmp and apps keep only their
private TMPDIR.
"""
from __future__ import annotations

import ctypes
import os

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"
DEFAULT_LAST_CAP = 40

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_probed: bool | None = None


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


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(None if source is None else os.fsencode(source), os.fsencode(target),
                       None, flags, None), f"mount {target}")


def private_tmp(tmp: str, keep: tuple[str, ...] = ()) -> None:
    """In a new mount namespace of the calling process, mount tmp onto /tmp,
    with /tmp/NAME for each NAME of keep bound back (see module doc). For a
    child between fork and exec, as root."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    for name in keep:
        inside = os.path.join(tmp, name)
        try:
            os.mkdir(inside, 0o755)
        except FileExistsError:
            pass
        _mount(os.path.join("/tmp", name), inside, MS_BIND | MS_REC)
    _mount(tmp, "/tmp", MS_BIND | MS_REC)


def private_tmp_works() -> bool:
    """Whether private_tmp succeeds here, asked once of a forked child."""
    global _probed
    if _probed is None:
        if os.geteuid() != 0:
            _probed = False
        else:
            pid = os.fork()
            if pid == 0:
                try:
                    _check(_libc.unshare(CLONE_NEWNS), "unshare")
                    _mount(None, "/", MS_REC | MS_PRIVATE)
                except BaseException:
                    os._exit(1)
                os._exit(0)
            _probed = os.waitpid(pid, 0)[1] == 0
    return _probed


def drop(uid: int, gid: int, tmp: str | None = None, keep: tuple[str, ...] = ()) -> None:
    """Become uid:gid for good, with no capabilities and no_new_privs, and
    with tmp as a private /tmp when given (see module doc)."""
    if tmp is not None and os.geteuid() == 0:
        private_tmp(tmp, keep)
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


def preexec(uid: int, gid: int, tmp: str | None = None, keep: tuple[str, ...] = ()):
    """A preexec_fn doing only the drop (own session included)."""
    def setup():
        os.setsid()
        drop(uid, gid, tmp, keep)
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
