"""The dependency cache: directories named by the hash of what went into them.

An entry (`CACHE/<kind>/<sha256>/`) is filled once, under an exclusive
flock, and marked complete by a `.complete` file written last; from then on
it is only read, by every release whose inputs hash the same. An entry
found incomplete (a build died half way) is removed and filled again.
Concurrent builds of one hash wait for each other instead of racing. This
module never modifies a complete entry and never deletes one.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dotcloud.fsutil import write_atomic

COMPLETE = ".complete"
SIZE = ".size"


def content_key(*parts: bytes | str) -> str:
    """sha256 over the parts, each length-prefixed so no two lists collide."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


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
        return (self.path / COMPLETE).is_file()

    def size(self) -> int:
        try:
            return int((self.path / SIZE).read_text())
        except (OSError, ValueError):
            return 0


def ensure(entry: Entry, fill: Callable[[Path], None],
           on_wait: Callable[[], None] = lambda: None) -> bool:
    """Make the entry complete; True if it already was (nothing was run).

    `fill(path)` builds the entry in place at its final path (virtualenvs
    are not relocatable); path does not exist when it is called. If fill
    raises, the partial entry is removed and the error propagates.
    """
    if entry.complete():
        return True
    entry.root.mkdir(parents=True, exist_ok=True)
    with open(entry.lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        if entry.complete():
            return True
        if os.path.lexists(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
        try:
            fill(entry.path)
            write_atomic(entry.path / SIZE, str(tree_size(entry.path)).encode())
            write_atomic(entry.path / COMPLETE, b"")
        except BaseException:
            shutil.rmtree(entry.path, ignore_errors=True)
            raise
    return False
