"""Removes what nothing will use again under the swarm runtime: the swarm
services of instances that should not run and whose launcher is gone (a
launcher killed -9 leaves its service; a new one adopts it, but an instance
stopped meanwhile gets none), with their placement files, those of `run`
commands whose launcher died (runtime.swarm_run), the build
containers of dead pipelines on the manager's engine, and their build
services on build nodes (runtime.build_nodes.sweep), and the OOM watcher's
configs of older versions (runtime.swarm_oom.sweep). Every SWEEP_EVERY
seconds, in its own thread with its own store connection, like the docker
runtime's sweeper.
"""
import threading

from dotcloud import logs, placement
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import build_nodes, docker_engine, docker_image, periodic, shimctl, swarm, swarm_oom
from .sweeper import BUILD_MARGIN, SWEEP_EVERY

log = logs.get("runtime")


def instances_to_keep(settings: Settings, store: Store) -> set[str]:
    keep: set[str] = set()
    for inst in store.instances(live_only=True):
        d = settings.paths.instance(inst.id)
        if inst.desired == "run" or shimctl.alive(d.pid, d.spec):
            name = placement.instance_name(inst.spec)
            if name:
                keep.add(name)
    return keep


def sweep_once(settings: Settings, store: Store) -> list[str]:
    keep = instances_to_keep(settings, store)
    client = docker_engine.connect()
    try:
        # A run's service stays while its task runs, at most as long as a run may.
        removed = swarm.sweep(client, settings.data, keep,
                              run_max_age=settings.build_timeout + BUILD_MARGIN)
        directory = placement.directory(settings.data)
        for file in directory.glob("*.json") if directory.is_dir() else ():
            if file.stem not in keep:
                file.unlink(missing_ok=True)
        # Build and postinstall containers only. The swarm's task containers on
        # the manager carry the data directory's label too (their image's), and
        # the swarm owns them: all kept.
        tasks = {c.name for c in client.containers.list(
            all=True, filters={"label": "com.docker.swarm.task.id"})}
        removed += docker_engine.sweep(client, settings.data, tasks,
                                       settings.build_timeout + BUILD_MARGIN)
        # Build services on build nodes (with their secret and configs) of dead pipelines.
        removed += build_nodes.sweep(client, settings.data, settings.build_timeout + BUILD_MARGIN)
        # The OOM watcher's configs of older versions, once no task mounts them.
        removed += swarm_oom.sweep(client, settings.data)
        # The manager's release images of destroyed apps and refused pushes.
        removed += docker_image.sweep(
            client, settings.data,
            lambda app, build: settings.paths.release(app, build).exists())
    finally:
        client.close()
    if removed:
        log.info("swarm_swept", removed=removed)
    return removed


def start(settings: Settings, stopping: threading.Event) -> threading.Thread:
    return periodic.start(settings, stopping, "swarm-sweep", sweep_once, SWEEP_EVERY)
