"""Keeps the artifacts of the last N builds of an app and removes older ones.

A build still used by a live generation is never removed, whatever its age.
Dependency cache entries that no kept release uses (and no build used for a
week) go with them.
"""
import shutil

from buildpacks import cache
from dotcloud import logs

from .build import release_dir

log = logs.get("retention")


def prune(settings, store, app: str) -> list[int]:
    releases = store.releases(app)
    builds = sorted({r.build for r in releases})
    live = {store.release_by_id(g.release).build
            for g in store.generations(app, ("starting", "active", "draining"))}
    keep = set(builds[-settings.keep_releases:]) | live
    removed = []
    for b in builds:
        path = release_dir(settings, app, b)
        if b not in keep and path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(b)
    if removed:
        log.info("releases_pruned", app=app, builds=removed)
        # The dependency cache is shared by every app: keep what any kept release uses.
        kept = [d for d in (settings.data / "releases").glob("*/v*") if d.is_dir()]
        dropped = cache.prune(settings.data / "cache", kept)
        if dropped:
            log.info("cache_pruned", entries=[p.name for p in dropped])
    return removed
