"""Keeps the artifacts of the last N builds of an app and removes older ones.

A build still used by a live generation is never removed, whatever its age.
"""
import shutil

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
    return removed
