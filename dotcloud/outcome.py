"""A push's outcome: the deploy branch and the active release move together.

The store decides. A release made by a push records the branch it came
from (`pushed_ref`); once that release is active, the branch is moved to
its revision and the release marked `ref_moved`. The pipeline does both
right after its deploy; when it is killed between the router switch and the
ref move, `settle` finishes the move from the store, so the branch never
stays behind what serves. `settle` also fails releases a killed pipeline
left "building" or "built", and stops a generation it left draining.
Every caller holds the app's deploy lock, so no
pipeline of the app is running while it settles. This module never
deploys anything.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from dulwich.repo import Repo

from . import logs
from .control import ControlUnavailable, request
from .datadir import DataDir
from .state import Store

PUSHED_REF = "pushed_ref"
REF_MOVED = "ref_moved"
UNFINISHED = ("building", "built")
INTERRUPTED = "interrupted: the pipeline stopped before it finished"
# Keys that describe one push, never inherited by a redeploy of its build.
PUSH_KEYS = (PUSHED_REF, REF_MOVED)

log = logs.get("outcome")


def push_config(variables: dict, ref: str) -> dict:
    return {"variables": variables, PUSHED_REF: ref}


def inherited(config: dict) -> dict:
    """A release's config as a redeploy or config change starts from it."""
    return {k: v for k, v in config.items() if k not in PUSH_KEYS}


def _move(repo_path: Path, ref: str, revision: str) -> None:
    repo = Repo(str(repo_path))
    try:
        name, target = ref.encode(), revision.encode()
        current = repo.refs.as_dict().get(name)
        if current == target:
            return
        if current is None:
            moved = repo.refs.add_if_new(name, target)
        else:
            moved = repo.refs.set_if_equals(name, current, target)
        if not moved:
            raise OSError(f"{ref} moved while it was being set")
    finally:
        repo.close()


def finish_push(repo_path: Path, store: Store, app: str) -> bool:
    """Move the branch of the app's active release if it came from a push; True if it did."""
    active = store.active_release(app)
    if active is None:
        return False
    config = json.loads(active.config)
    ref = config.get(PUSHED_REF)
    if not ref or config.get(REF_MOVED):
        return False
    _move(repo_path, ref, active.revision)
    store.set_release_config(active.id, dict(config, **{REF_MOVED: True}), active.status)
    log.info("ref_moved", app=app, ref=ref, revision=active.revision[:7],
             release=active.number)
    return True


def settle(repo_path: Path, store: Store, app: str, paths: DataDir | None = None,
           drop_build: Callable[[int], None] | None = None) -> list[str]:
    """Finish what a pipeline killed half way left; what was done, for the log.

    With paths, the runtime is asked to act on instances this stopped;
    `drop_build(n)` removes the build output of an interrupted release vN.
    """
    done = []
    for release in store.releases(app):
        if release.status in UNFINISHED:
            store.set_release_status(release.id, "failed", INTERRUPTED)
            done.append(f"v{release.number} failed ({release.status} when interrupted)")
            if drop_build is not None and release.build == release.number:
                drop_build(release.number)
    if finish_push(repo_path, store, app):
        done.append("branch moved to the active release")
    if _stop_drained(store, app):
        done.append("the previous generation stopped")
        if paths is not None:
            try:
                request(paths.socket("runtime"), {"op": "reconcile"}, timeout=30)
            except ControlUnavailable:
                pass    # the runtime acts on the store when it is back
    if done:
        log.info("push_settled", app=app, done=done)
    return done


def _stop_drained(store: Store, app: str) -> bool:
    """Stop generations left draining by a pipeline killed after its switch."""
    row = store.app(app)
    stale = [g for g in store.generations(app, ("draining",))
             if row is None or g.id != row.generation]
    for gen in stale:
        store.set_desired([i.id for i in store.instances(app, generation=gen.id)], "stop")
        store.set_generation_state(gen.id, "retired")
    return bool(stale)


def pushed(store: Store, app: str, ref: str, revision: str) -> bool:
    """Whether a push of `revision` to `ref` is what the app now serves."""
    active = store.active_release(app)
    if active is None or active.revision != revision:
        return False
    config = json.loads(active.config)
    return config.get(PUSHED_REF) == ref and bool(config.get(REF_MOVED))
