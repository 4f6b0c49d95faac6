"""Removes the cgroups nothing will use again (runtime.cgroups), every minute.

A pipeline or SSH daemon killed with -9 leaves its build step's or `run`
command's group behind, maybe with a process that called setsid() still in
it; a shim killed with -9 leaves its instance's group. Every SWEEP_EVERY
seconds (and once at start) this kills and removes the transient groups of
dead owners (cgroups.sweep) and the instance groups of instances that
should not run and have no live shim. It runs in its own thread with its own
store connection, so a reconcile pass never waits for it; a host without
cgroups costs nothing.
"""
import re
import threading

from dotcloud import logs
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import cgroups, periodic, shimctl

log = logs.get("runtime")
SWEEP_EVERY = 60.0
INSTANCE_RE = re.compile(r"instance-([0-9]+)")


def sweep_once(settings: Settings, store: Store) -> list[str]:
    removed = cgroups.sweep(settings.data)
    # Listed before the store is read: a group made after this belongs to a
    # shim started after it, for an instance the store already says to run.
    found = cgroups.names(settings.data)
    keep = set()
    for inst in store.instances(live_only=True):
        d = settings.paths.instance(inst.id)
        if inst.desired == "run" or shimctl.alive(d.pid, d.spec):
            keep.add(cgroups.instance_name(inst.id))
    for name in found:
        if INSTANCE_RE.fullmatch(name) and name not in keep:
            group = cgroups.existing(settings.data, name)
            if group is not None and group.remove():
                removed.append(name)
    if removed:
        log.info("cgroups_swept", removed=removed)
    return removed


def start(settings: Settings, stopping: threading.Event) -> threading.Thread | None:
    if cgroups.hierarchies() is None:
        return None

    return periodic.start(settings, stopping, "cgroup-sweep", sweep_once, SWEEP_EVERY,
                          at_start=True)
