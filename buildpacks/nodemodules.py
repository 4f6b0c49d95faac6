"""A release's own node_modules, made of hard links to a cached install.

The release gets a real directory (so `node_modules/..` is the app, as
sass and friends expect), built in a fraction of a second by `cp -al` from
the cache entry instead of a reinstall. Hard links share their data with
the entry, so what the build does to node_modules must never write into a
linked file:

- Package managers rewrite their own state files in place (npm prune
  truncates `node_modules/.package-lock.json`), so the regular files at the
  top of node_modules and of `node_modules/.pnpm` are copied, not linked.
  Removing packages (prune) only unlinks, which leaves the entry intact.
- yarn 1 links every kept bin again when it prunes, and chmods its target:
  as the app's user that fails on the sealed entry's file (EPERM), so the
  files `.bin` links lead to are copied too.
- A build script may still write into a package's file in place
  (patch-package, `prisma generate`). `written_in_place` finds that after
  the build (a file of the entry newer than the entry itself); the caller
  then discards the entry, and remembers those paths beside it so every
  later materialisation copies them instead of linking them. The same
  check before each reuse catches what wrote later (the build file's
  postbuild, postinstall, the app at run time), so a written entry never
  reaches another release.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from dotcloud.fsutil import write_atomic

from . import cache

STATE_DIRS = ("", ".pnpm")      # relative to node_modules: where managers keep state files


def _copy_over(path: Path) -> None:
    """Give path its own inode with the same content (atomic for readers)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".copy-")
    os.close(fd)
    try:
        shutil.copy2(path, tmp, follow_symlinks=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def copy_list_path(entry: cache.Entry) -> Path:
    return entry.root / f".{entry.key}.copy"


def materialise(entry: cache.Entry, target: Path) -> bool:
    """target (absent) becomes entry's node_modules: links, except what gets written.

    False when the entry is no longer complete (discarded meanwhile).
    """
    with open(entry.lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)   # not removed while we link from it
        if not entry.complete():
            return False
        source = str(entry.path / "node_modules")
        linked = subprocess.run(["cp", "-al", "--", source, str(target)], capture_output=True)
        if linked.returncode != 0:
            # The cache on another filesystem than the releases: copies then.
            remove(target)
            subprocess.run(["cp", "-a", "--", source, str(target)], check=True,
                           capture_output=True)
    private = []
    for rel in STATE_DIRS:
        directory = target / rel
        if directory.is_dir() and not directory.is_symlink():
            private += [p for p in directory.iterdir() if p.is_file() and not p.is_symlink()]
    try:
        remembered = json.loads(copy_list_path(entry).read_text())
    except (OSError, ValueError):
        remembered = []
    for rel in remembered:
        path = target / rel
        if (isinstance(rel, str) and ".." not in Path(rel).parts and path.is_file()
                and not path.is_symlink()):
            private.append(path)
    private += _bin_targets(target)
    for path in dict.fromkeys(private):
        _copy_over(path)
    return True


def _bin_targets(root: Path) -> list[Path]:
    """Linked files (of the entry) that the `.bin` links of every node_modules under root name."""
    top = os.path.realpath(root)
    found = []
    for directory, dirs, _ in os.walk(root):
        # Down packages and their own node_modules only, not into their files.
        if os.path.basename(directory) == ".bin":
            dirs.clear()
            for link in os.scandir(directory):
                if not link.is_symlink():
                    continue
                real = os.path.realpath(link.path)
                try:
                    st = os.lstat(real)
                except OSError:
                    continue
                if (real.startswith(top + os.sep) and stat.S_ISREG(st.st_mode)
                        and st.st_nlink > 1):
                    found.append(Path(real))
        elif not _holds_packages(directory):
            dirs[:] = [d for d in dirs if d == "node_modules"]
    return found


def _holds_packages(directory: str) -> bool:
    name, parent = os.path.basename(directory), os.path.basename(os.path.dirname(directory))
    return name == "node_modules" or (name.startswith("@") and parent == "node_modules")


def written_in_place(entry: cache.Entry) -> list[str]:
    """Files of the entry's node_modules modified since it was completed."""
    try:
        since = os.stat(entry.path / cache.COMPLETE).st_mtime_ns
    except FileNotFoundError:
        return []     # discarded meanwhile: nothing of it will be used again
    root = entry.path / "node_modules"
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if st.st_mtime_ns > since:
                found.append(os.path.relpath(path, root))
    return sorted(found)


def discard(entry: cache.Entry, paths: list[str]) -> None:
    """Remove an entry whose files were written, remembering which to copy next time."""
    with open(entry.lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # no build is materialising from it meanwhile
        try:
            old = json.loads(copy_list_path(entry).read_text())
        except (OSError, ValueError):
            old = []
        write_atomic(copy_list_path(entry),
                     json.dumps(sorted(set(old) | set(paths))).encode())
        if entry.path.exists():
            trash = entry.root / f".{entry.key}.discarded-{os.getpid()}"
            os.rename(entry.path, trash)
            shutil.rmtree(trash, ignore_errors=True)


def remove(path: Path) -> bool:
    """Remove whatever is at path (file, link or tree); True if something was."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.is_dir():
        shutil.rmtree(path)
        return True
    return False
