"""A Unix user per app: allocated from `app_uid_range`, recorded in the store.

Each app runs its builds, hooks, instances, `run` commands and data
servers as its own unprivileged uid, with a group of the same number
(SPEC section 11). The number is allocated when the app is created and
freed when it is destroyed (the `app_users` row goes with the app's
rows); an app made by an older version gets one on first need (`of`).
Allocation hands out the number after the last one handed out, wrapping
around the range, so a freed uid is reused as late as possible (files or
processes of a destroyed app that outlive it a moment never become a new
app's). A uid the host already knows as someone else's is skipped.

Each uid also gets a host account, `dc-UID` (group of the same name and
number), made once and never removed: it is named by the number only, so
it is the same whichever app holds the number. Numeric ids alone would
do for most programs (HOME is always in their environment), but not for
all: initdb refuses to run for a uid without a name ("could not look up
effective user ID"), and so do libpq's default user, `getpass.getuser()`,
ssh and git. Without root nothing is dropped and no account is made:
`of` still answers, and the callers' privilege drop is a no-op.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import threading
from dataclasses import dataclass

from . import filemodes, logs
from .errors import DotcloudError
from .settings import Settings
from .state import Store

ACCOUNT_PREFIX = "dc-"
NEXT_KEY = "app_uid_next"
NOLOGIN = "/usr/sbin/nologin"

log = logs.get("appusers")
_accounts_made: set[int] = set()
_accounts_lock = threading.Lock()


class NoUidLeft(DotcloudError):
    """Every uid of app_uid_range is taken."""


@dataclass(frozen=True)
class AppUser:
    uid: int
    gid: int

    @property
    def name(self) -> str:
        return f"{ACCOUNT_PREFIX}{self.uid}"

    def as_list(self) -> list[int]:
        """The instance and shim specs' form: [uid, gid]."""
        return [self.uid, self.gid]


def for_app(settings: Settings, app: str) -> AppUser | None:
    """The user `app` runs as, or None when nothing is dropped (the platform
    is not root). Opens the store for it: for callers that hold none."""
    if not filemodes.dropping():
        return None
    store = Store(settings.paths.db)
    try:
        return of(store, settings, app)
    finally:
        store.close()


def lookup(store: Store, app: str) -> AppUser | None:
    row = store.db.execute("SELECT uid FROM app_users WHERE app=?", (app,)).fetchone()
    return AppUser(row["uid"], row["uid"]) if row else None


def of(store: Store, settings: Settings, app: str) -> AppUser:
    """The app's user, allocated now if it has none yet (created by an older
    version); its host account made if missing."""
    user = lookup(store, app) or allocate(store, settings, app)
    ensure_account(user)
    return user


def allocate(store: Store, settings: Settings, app: str) -> AppUser:
    """Give `app` a uid of its own (idempotent: an app keeps the one it has)."""
    low, high = settings.app_uid_range
    size = high - low + 1
    with store.tx():
        row = store.db.execute("SELECT uid FROM app_users WHERE app=?", (app,)).fetchone()
        if row:
            return AppUser(row["uid"], row["uid"])
        taken = {r["uid"] for r in store.db.execute("SELECT uid FROM app_users")}
        meta = store.db.execute("SELECT value FROM meta WHERE key=?", (NEXT_KEY,)).fetchone()
        start = int(meta["value"]) if meta else low
        if not low <= start <= high:
            start = low     # the operator changed the range
        for step in range(size):
            uid = low + (start - low + step) % size
            if uid not in taken and not _foreign(uid):
                break
        else:
            raise NoUidLeft(f"no free uid left in app_uid_range {low}-{high} "
                            f"({len(taken)} apps); widen it in {settings.paths.config}")
        store.db.execute("INSERT INTO app_users(app, uid) VALUES(?,?)", (app, uid))
        nxt = low + (uid - low + 1) % size
        store.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)",
                         (NEXT_KEY, str(nxt)))
    # What an earlier app of this uid downloaded is not the new one's to run.
    shutil.rmtree(settings.paths.tool_cache(uid), ignore_errors=True)
    log.info("app_user_allocated", app=app, uid=uid)
    return AppUser(uid, uid)


def _foreign(uid: int) -> bool:
    """Whether the host has an account with this uid or gid that is not ours."""
    for getter in (pwd.getpwuid, grp.getgrgid):
        try:
            name = getter(uid)[0]
        except KeyError:
            continue
        if name != f"{ACCOUNT_PREFIX}{uid}":
            return True
    return False


def ensure_account(user: AppUser) -> None:
    """Make the host account dc-UID (and its group) unless it exists; only as root."""
    if os.geteuid() != 0 or user.uid in _accounts_made:
        return
    with _accounts_lock:
        if not _has_account(user):
            _make_account(user)
        _accounts_made.add(user.uid)


def _has_account(user: AppUser) -> bool:
    try:
        pwd.getpwuid(user.uid)
        grp.getgrgid(user.gid)
        return True
    except KeyError:
        return False


def _make_account(user: AppUser) -> None:
    steps = []
    try:
        grp.getgrgid(user.gid)
    except KeyError:
        steps.append(["groupadd", "--system", "--gid", str(user.gid), user.name])
    try:
        pwd.getpwuid(user.uid)
    except KeyError:
        steps.append(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                      "--shell", NOLOGIN, "--uid", str(user.uid), "--gid", str(user.gid),
                      "--no-user-group", user.name])
    for argv in steps:
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        # Another platform (or daemon) may have made it a moment ago: fine if it exists now.
        if out.returncode != 0 and not _has_account(user):
            detail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            log.warning("app_account_not_made", uid=user.uid, argv=argv[0], error=detail[0])
