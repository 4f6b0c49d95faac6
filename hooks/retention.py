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
    prune_homes(settings, store, app)
    if settings.runtime != "process":
        # With their releases go their images (and those of refused pushes).
        from runtime import docker_image    # the docker SDK: only for its runtimes
        docker_image.prune_app(settings, app, {b for b in builds
                                               if release_dir(settings, app, b).exists()})
    if removed:
        log.info("releases_pruned", app=app, builds=removed)
        # The dependency cache is shared by every app: keep what any kept release uses.
        kept = settings.paths.all_releases()
        dropped = cache.prune(settings.paths.cache, kept)
        if dropped:
            log.info("cache_pruned", entries=[p.name for p in dropped])
    return removed


def prune_homes(settings, store, app: str) -> list[str]:
    """Remove the homes of instances that are gone: stopped, of a generation no longer live.

    A data service's instance keeps the home it was born with across
    generations, so what an instance's spec names is kept, whatever its
    generation.
    """
    root = settings.paths.homes(app)
    if not root.is_dir():
        return []
    live = {g.id for g in store.generations(app, ("starting", "active", "draining"))}
    in_use = {i.spec.home for i in store.instances(app)
              if i.spec is not None and not (i.desired == "stop" and i.state == "stopped")}
    removed = []
    for home in root.iterdir():
        generation = settings.paths.home_generation(home)
        if generation is None or generation in live or str(home) in in_use:
            continue
        shutil.rmtree(home, ignore_errors=True)
        removed.append(home.name)
    if removed:
        log.info("homes_pruned", app=app, homes=sorted(removed))
    return removed
