"""The dependency cache: directories named by the hash of what went into them.

An entry (`CACHE/<kind>/<sha256>/`) is filled once, under an exclusive
flock, and marked complete by a `.complete` file written last; from then on
it is only read, by every release whose inputs hash the same. An entry
found incomplete (a build died half way) is removed and filled again.
Concurrent builds of one hash wait for each other instead of racing.
Releases record the entries they run with (`RELEASE/.deps/`), and `prune`
removes only entries that no listed release uses and no build used lately.
This module never modifies a complete entry, and never deletes one that a
listed release uses.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from dotcloud.filemodes import seal
from dotcloud.fsutil import write_atomic

COMPLETE = ".complete"
SIZE = ".size"
DEPS = ".deps"           # in a release: one symlink per cache entry it runs with
KINDS = ("python", "node")
# Entries this process is filling now. A pipeline builds one release at a
# time, so they are that build's: its disk limit counts them
# (buildpacks.disklimit).
_filling: set[Path] = set()


def content_key(*parts: bytes | str) -> str:
    """sha256 over the parts, each length-prefixed so no two lists collide."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def filling() -> list[Path]:
    """The entries this process is filling right now."""
    return sorted(_filling)


@contextmanager
def _being_filled(path: Path):
    _filling.add(path)
    try:
        yield
    finally:
        _filling.discard(path)


def tree_size(path: Path) -> int:
    """Bytes of the regular files under path, symlinks not followed."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += st.st_size
    return total


@dataclass(frozen=True)
class Entry:
    root: Path    # CACHE/<kind>
    key: str

    @property
    def path(self) -> Path:
        return self.root / self.key

    @property
    def lock_path(self) -> Path:
        # Beside the entry, not in it, so removing a broken entry keeps the lock.
        return self.root / f".{self.key}.lock"

    def complete(self) -> bool:
        # Marked by the platform itself, after sealing: a `.complete` the
        # build's user wrote while it owned the entry does not count.
        try:
            st = os.lstat(self.path / COMPLETE)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()

    def size(self) -> int:
        try:
            return int((self.path / SIZE).read_text())
        except (OSError, ValueError):
            return 0


def _lock(lock, mode: int, on_wait: Callable[[], None]) -> None:
    try:
        fcntl.flock(lock, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        on_wait()
        fcntl.flock(lock, mode)


def _mark_used(lock) -> None:
    # The lock file's mtime is the entry's last use (for `prune`); the
    # entry itself is never written again once complete.
    os.utime(lock.fileno())


def ensure(entry: Entry, fill: Callable[[Path], None],
           on_wait: Callable[[], None] = lambda: None,
           owner: tuple[int, int] | None = None) -> bool:
    """Make the entry complete; True if it already was (nothing was run).

    `fill(path)` builds the entry in place at its final path (virtualenvs
    are not relocatable); path does not exist when it is called, unless
    `owner` (uid, gid: the build's user) is given: then it is an empty
    directory of that owner, and once filled it is sealed (root's, no write
    bits, readable by all) before it is marked complete, so no app can
    change what another app runs. If fill raises, the partial entry is
    removed and the error propagates. `on_wait()` is called once if another
    build holds the entry.
    """
    entry.root.mkdir(parents=True, exist_ok=True)
    waited = []

    def wait_once():
        if not waited:
            waited.append(True)
            on_wait()
    with open(entry.lock_path, "a") as lock:
        # Shared to reuse (many builds at once), exclusive to fill or prune.
        _lock(lock, fcntl.LOCK_SH, wait_once)
        if entry.complete():
            _mark_used(lock)
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        _lock(lock, fcntl.LOCK_EX, wait_once)
        if entry.complete():
            _mark_used(lock)
            return True
        if os.path.lexists(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
        try:
            if owner is not None:
                entry.path.mkdir()
                os.chown(entry.path, *owner)
            with _being_filled(entry.path):
                fill(entry.path)
            if owner is not None:
                seal(entry.path)
            write_atomic(entry.path / SIZE, str(tree_size(entry.path)).encode())
            write_atomic(entry.path / COMPLETE, b"")
        except BaseException:
            shutil.rmtree(entry.path, ignore_errors=True)
            raise
        _mark_used(lock)
    return False


def record_use(release_dir: Path, name: str, entry: Entry) -> None:
    """Note in the release that it runs with this entry, so `prune` keeps it."""
    deps = Path(release_dir) / DEPS
    deps.mkdir(parents=True, exist_ok=True)
    link = deps / name
    if os.path.lexists(link):
        link.unlink()
    os.symlink(entry.path, link)


def prune(cache_dir: Path, release_dirs: Iterable[Path], min_idle: float = 7 * 86400) -> list[Path]:
    """Remove entries no release in release_dirs uses and no build used lately.

    release_dirs must list every release that may still run or be rolled
    back to. An entry is removed only under its exclusive lock, after its
    last use is checked again, so a build reusing it at the same moment
    either keeps it or builds it anew. Returns the removed paths.
    """
    used = set()
    for release in release_dirs:
        deps = Path(release) / DEPS
        if deps.is_dir():
            used.update(os.path.realpath(link) for link in deps.iterdir())
    removed = []
    now = time.time()
    for kind in KINDS:
        root = Path(cache_dir) / kind
        if not root.is_dir():
            continue
        for path in sorted(root.iterdir()):
            if path.name.startswith(".") or os.path.realpath(path) in used:
                continue
            entry = Entry(root, path.name)
            with open(entry.lock_path, "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being built or reused right now
                if now - os.fstat(lock.fileno()).st_mtime < min_idle:
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
