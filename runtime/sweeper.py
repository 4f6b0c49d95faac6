"""Removes the docker containers and images nothing will use again (docker runtime only).

A shim killed -9 leaves its container running; a pipeline that died leaves
its build container. Every SWEEP_EVERY seconds this keeps the containers of
instances that should run or whose shim is alive and lets
docker_engine.sweep remove the rest of this data directory's, then removes
the release images whose release is gone (docker_image.sweep). It runs in its
own thread with its own store connection, so a slow engine never delays a
reconcile pass, and an engine that is down only costs a log line.
"""
import threading

from dotcloud import logs
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import docker_engine, docker_image, periodic, shimctl
from .docker_launcher import container_names

log = logs.get("runtime")
SWEEP_EVERY = 60.0
# A build container older than the longest build (plus a margin) belongs to a dead pipeline.
BUILD_MARGIN = 300.0


def containers_to_keep(settings: Settings, store: Store) -> set[str]:
    keep: set[str] = set()
    for inst in store.instances(live_only=True):
        d = settings.paths.instance(inst.id)
        if inst.desired == "run" or shimctl.alive(d.pid, d.spec):
            keep.update(container_names(settings, inst.spec).values())
    return keep


def sweep_once(settings: Settings, store: Store) -> list[str]:
    keep = containers_to_keep(settings, store)
    client = docker_engine.connect()
    removed = docker_engine.sweep(client, settings.data, keep,
                                  settings.build_timeout + BUILD_MARGIN)
    if removed:
        log.info("containers_swept", removed=removed)
    images = docker_image.sweep(client, settings.data,
                                lambda app, build: settings.paths.release(app, build).exists())
    if images:
        log.info("images_swept", removed=images)
    return removed


def start(settings: Settings, stopping: threading.Event) -> threading.Thread:
    return periodic.start(settings, stopping, "container-sweep", sweep_once, SWEEP_EVERY)
