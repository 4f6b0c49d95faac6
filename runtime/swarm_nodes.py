"""The swarm runtime seen from the command line: `up --runtime swarm` checks
the engine and makes a lone one a one-node swarm; `dotcloud-server nodes`
lists the swarm's nodes and the platform's instances on each.

An instance is on the node its placement names (dotcloud.placement, written
by its launcher); one being placed is listed apart.
"""
from __future__ import annotations

import json
import sys

from dotcloud import placement
from dotcloud.errors import DotcloudError
from dotcloud.state import Store

from . import docker_engine, swarm


def prepare(settings) -> str:
    """What the platform drives (one line), once the engine is a swarm manager;
    DotcloudError in one line when it cannot be."""
    try:
        client = docker_engine.connect()
        try:
            return swarm.ensure_swarm(client) + (f", registry {settings.registry}"
                                                 if settings.registry else
                                                 ", no registry: instances on the manager only")
        finally:
            client.close()
    except docker_engine.EngineError as e:
        raise DotcloudError(f"--runtime swarm: {e}") from None


def instances_by_node(settings, store: Store) -> dict[str | None, list[str]]:
    """Node hostname (None: being placed) -> the instances running there."""
    out: dict[str | None, list[str]] = {}
    for inst in store.instances(live_only=True):
        if inst.desired != "run":
            continue
        placed = placement.of(settings.data, inst.spec)
        if placed is None:
            continue                       # not a swarm instance (a data server, say)
        out.setdefault(placed.node, []).append(f"{inst.app}.{inst.label}")
    return out


def print_nodes(settings, store: Store, as_json: bool = False) -> int:
    try:
        client = docker_engine.connect()
        try:
            found = swarm.nodes(client)
        finally:
            client.close()
    except docker_engine.EngineError as e:
        raise DotcloudError(str(e)) from None
    except docker_engine.ENGINE_ERRORS as e:
        raise DotcloudError(f"the engine is not a swarm manager ({docker_engine.short(e)}); "
                            "set DOCKER_HOST to the manager's engine, as for `up`") from None
    placed = instances_by_node(settings, store)
    rows = [{"node": n.hostname, "addr": n.addr, "role": n.role, "state": n.state,
             "availability": n.availability, "labels": n.labels,
             "instances": sorted(placed.get(n.hostname, []))} for n in found]
    waiting = sorted(placed.get(None, []))
    if as_json:
        print(json.dumps({"nodes": rows, "unplaced": waiting}, indent=1))
        return 0
    headers = ["NODE", "ADDRESS", "ROLE", "STATE", "AVAILABILITY", "LABELS", "INSTANCES"]
    cells = [[r["node"], r["addr"], r["role"], r["state"], r["availability"],
              ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-",
              " ".join(r["instances"]) or "-"] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *cells)]
    for line in [headers, *cells]:
        sys.stdout.write("  ".join(str(c).ljust(w) for c, w in zip(line[:-1], widths))
                         + "  " + str(line[-1]) + "\n")
    if waiting:
        sys.stdout.write(f"being placed: {' '.join(waiting)}\n")
    return 0
