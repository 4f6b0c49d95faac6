"""Who may read and write what in the data directory (SPEC section 11).

The platform runs as root; each app as its own uid (dotcloud.appusers).
Ownership and modes keep an app to its own files:

    DATA                           root 0711   (apps pass through, list nothing)
    dotcloud.db*, host key, config root 0600
    run/ repos/ instances/ logs/   root 0700   (sockets, code, shim specs, logs)
    tls/ acme/                     root 0700
    releases/ homes/ services/     root 0711
    cache/ and cache/KIND/         root 0711   (entries are found by their hash)
    releases/APP                   root:APP 0750; a finished release the same,
                                   no write bits (`seal`)
    homes/APP, services/APP        APP 0700    (read-write for the app alone)
    cache/KIND/HASH (complete)     root, no write bits, readable by all (`seal`)
    cache/users/UID                UID 0700    (its download caches: npm, uv...)

`secure` sets the top of it at every start (cheap: a dozen chmods) and
says which directory above DATA keeps app users out. `own` and `own_tree`
hand a directory to an app; `seal` takes a tree back, read-only. Nothing
here decides which app owns what; callers pass the uid and gid.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from . import logs
from .datadir import DataDir

# What a sealed file keeps: read and execute, never write, setuid, setgid or sticky.
SEALED_BITS = 0o555

log = logs.get("filemodes")


def dropping() -> bool:
    """Whether apps run as their own users: only a root platform can make them.
    DOTCLOUD_APP_USERS=0 turns it off, to measure what it costs (README)."""
    return os.geteuid() == 0 and os.environ.get("DOTCLOUD_APP_USERS") != "0"


def secure(paths: DataDir) -> list[Path]:
    """Set the modes of DATA's top (see the module doc); return the directories
    above DATA that app users cannot pass through (then nothing of DATA works
    for them: the caller warns)."""
    _chmod(paths.root, 0o711)
    for path in (paths.run, paths.repos, paths.instances, paths.logs, paths.tls, paths.acme):
        _chmod(path, 0o700)
    for path in (paths.releases_root, paths.homes_root, paths.services_root, paths.cache):
        _chmod(path, 0o711)
    for kind in _children(paths.cache):     # python/, node/, users/...: found by name only
        if kind.is_dir() and not kind.is_symlink():
            _chmod(kind, 0o711)
    for path in (paths.db, paths.db.with_name(paths.db.name + "-wal"),
                 paths.db.with_name(paths.db.name + "-shm"), paths.config, paths.host_key):
        _chmod(path, 0o600)
    return closed_above(paths.root)


def closed_above(path: Path) -> list[Path]:
    """Directories above `path` without search permission for others."""
    closed = []
    for parent in Path(path).resolve().parents:
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                closed.append(parent)
        except OSError:
            pass
    return closed


def own(path: Path, uid: int, gid: int, mode: int = 0o700) -> None:
    """path (a directory, made if missing) belongs to uid:gid with `mode`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def group(path: Path, gid: int, mode: int = 0o750) -> None:
    """path (made if missing) is root's, readable by group gid alone."""
    own(path, 0, gid, mode)


def own_tree(path: Path, uid: int, gid: int) -> int:
    """Everything under path (path too) belongs to uid:gid, writable by it,
    except hard links to root's files (sealed cache entries); returns how
    many entries changed owner. Symlinks are changed themselves, never followed."""
    changed = 0
    for entry in _walk(Path(path)):
        st = os.lstat(entry)
        if st.st_uid == 0 and st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            continue    # a hard link to a sealed cache entry: every app's, never one's
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.lchown(entry, uid, gid)
            changed += 1
        # Copies of sealed files (cp -al makes directories with the entry's modes).
        if not stat.S_ISLNK(st.st_mode) and not st.st_mode & stat.S_IWUSR:
            os.chmod(entry, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
    return changed


def seal(path: Path, gid: int = 0, others: bool = True) -> int:
    """Take back the tree at path: what is not root's becomes root:gid with
    no write bits (nor setuid, setgid, sticky), and with others=False nothing
    for others. What is root's already is left as it is: a release's
    node_modules are hard links to sealed cache entries, whose owner and
    modes every other app relies on. Returns how many entries changed."""
    keep = SEALED_BITS if others else SEALED_BITS & 0o770
    changed = 0
    for entry in _walk(Path(path)):
        st = os.lstat(entry)
        if st.st_uid == 0:
            continue
        # Mode first: while the builder still owns it, a chown-then-chmod
        # would leave a moment where root owns a writable setuid file.
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(entry, stat.S_IMODE(st.st_mode) & keep)
        os.lchown(entry, 0, gid)
        changed += 1
    return changed


def _walk(root: Path):
    yield root
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            yield os.path.join(directory, name)


def _children(path: Path) -> list[Path]:
    try:
        return list(Path(path).iterdir())
    except OSError:
        return []


def _chmod(path: Path, mode: int) -> None:
    try:
        if not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
