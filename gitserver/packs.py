"""Temporary pack files that a refused or interrupted push left in a repository.

dulwich receives a pack into `objects/tmp_pack_*` (or `objects/pack/tmp*.pack`)
and renames it into place only when it is complete and valid; a corrupt,
truncated or oversized push leaves the partial file behind, whole. A file
still open in this process belongs to a push being received right now and
is kept; any other is garbage, whichever push left it (one killed with the
daemon included).
"""
from __future__ import annotations

import os
from pathlib import Path

from dotcloud import logs

log = logs.get("gitserver")


def _open_paths() -> set[str]:
    paths = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return paths


def remove_stale(repo: Path) -> int:
    """Remove the temporary packs of repo that no receive in progress holds; their bytes."""
    objects = Path(repo) / "objects"
    candidates = list(objects.glob("tmp_pack_*")) + list((objects / "pack").glob("tmp*.pack"))
    if not candidates:
        return 0
    busy = _open_paths()
    freed = 0
    for path in candidates:
        if str(path) in busy:
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        freed += size
    if freed:
        log.info("temporary_packs_removed", repo=Path(repo).name, bytes=freed)
    return freed
