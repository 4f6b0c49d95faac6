"""A build's disk limit: what a release takes on disk, measured while its steps run.

A release's size is the disk space (as `du` counts it: allocated blocks,
each file once however many hard links it has, symlinks not followed) of
its directory (the pushed tree, what the steps write there, the build's
HOME, which is the release directory), of the build's own TMPDIR (its
scratch, when the platform gives it one), and of the dependency cache
entries it runs with or is filling (buildpacks.cache). `DiskLimit.check()` measures
it now and then and raises BuildError past the limit; `Bounded` wraps an
executor so that every step runs with that check (the executor kills the
step as it would at its deadline), and the caller measures once more when
the build ends. What the steps write elsewhere (/tmp by its absolute path,
the download caches of pip and uv) is not counted here.
"""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from dotcloud import logs
from dotcloud.errors import BuildError

from . import cache
from .executor import Executor

# Measuring walks the trees: at most a tenth of the time goes to it, and
# never more often than this (seconds).
MIN_INTERVAL = 0.1
SHARE = 10


def human(n: int) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def too_large(limit: int) -> BuildError:
    return BuildError(f"the release is larger than max_release_bytes ({human(limit)})")


def disk_usage(roots: Iterable[Path]) -> int:
    """Bytes allocated to the files and directories under roots, each inode once.

    What disappears while it is walked is skipped: steps keep writing.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    pending: list[str] = []

    def count(path: str, st: os.stat_result) -> None:
        nonlocal total
        # Directories once too: a root may lie inside another.
        if st.st_nlink > 1 or stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                return
            seen.add(key)
        total += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            pending.append(path)

    for root in roots:
        try:
            count(os.fspath(root), os.lstat(root))
        except OSError:
            continue
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    count(entry.path, entry.stat(follow_symlinks=False))
                except OSError:
                    continue
    return total


def entries_used(release_dir: Path) -> list[Path]:
    """The cache entries a release records that it runs with (cache.DEPS)."""
    deps = Path(release_dir) / cache.DEPS
    try:
        return [Path(os.path.realpath(link)) for link in deps.iterdir()]
    except OSError:
        return []


class DiskLimit:
    """The limit of one release's build (see the module doc)."""

    def __init__(self, limit: int, release_dir: Path, scratch: Sequence[Path] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.release_dir = Path(release_dir)
        self.scratch = tuple(Path(p) for p in scratch)    # the build's TMPDIR, when its own
        self.clock = clock
        self.due = 0.0
        self.peak = 0

    def measure(self) -> int:
        roots = [self.release_dir, *self.scratch, *entries_used(self.release_dir),
                 *cache.filling()]
        used = disk_usage(roots)
        self.peak = max(self.peak, used)
        return used

    def check(self, force: bool = False) -> None:
        """Raise BuildError when the release is past the limit; measures only
        when due (or forced), so it may be called as often as one likes."""
        started = self.clock()
        if not force and started < self.due:
            return
        used = self.measure()
        self.due = self.clock() + max(MIN_INTERVAL, SHARE * (self.clock() - started))
        if used > self.limit:
            logs.get("buildpacks").info("release_too_large", release=str(self.release_dir),
                                        used=used, limit=self.limit)
            raise too_large(self.limit)


class Bounded:
    """An executor whose steps run under a DiskLimit: past it, the step is
    stopped and BuildError raised (everything else is the wrapped executor's)."""

    def __init__(self, inner: Executor, limit: DiskLimit) -> None:
        self.inner = inner
        self.limit = limit

    @property
    def python(self) -> str:
        return self.inner.python

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def on_host(self) -> bool:
        return self.inner.on_host

    @property
    def image(self) -> str:
        """The docker runtime's base image (its tag names the Python version builds get)."""
        return getattr(self.inner, "image", "")

    @property
    def host(self) -> Executor:
        host = self.inner.host
        return self if host is self.inner else Bounded(host, self.limit)

    def tool(self, name: str, path: str) -> str | None:
        return self.inner.tool(name, path)

    def __getattr__(self, name: str):
        # What callers read of one kind of executor (the docker one's image).
        if name == "inner":
            raise AttributeError(name)      # not set yet (copy, pickle): no recursion
        return getattr(self.inner, name)

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            timeout: float, on_line: Callable[[str], None],
            check: Callable[[], None] | None = None) -> int:
        def both() -> None:
            self.limit.check()
            if check is not None:
                check()
        return self.inner.run(argv, cwd=cwd, env=env, timeout=timeout, on_line=on_line,
                              check=both)
