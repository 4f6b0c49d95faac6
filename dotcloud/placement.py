"""Where an instance runs: the node and the address the router proxies to.

On one host every instance listens on 127.0.0.1. Under the swarm runtime an
instance is a swarm task on some node, and it moves when its node is lost;
the swarm launcher that follows it writes DATA/run/placement/NAME.json
(NAME: the instance's home directory name, unique within a data directory)
each time its task starts running somewhere, or stops. Routes, drains,
health checks, `status` and `nodes` read it here. The file lives under the
platform's own run directory, never in the app's home, so an app cannot
point the router anywhere.

An instance without a placement file runs on this host (127.0.0.1). One
whose file says no address is placed nowhere yet (its task is being
scheduled, or its node is down): it gets no traffic.
"""
import json
from dataclasses import dataclass
from pathlib import Path

from .datadir import DataDir
from .fsutil import read_json, write_json

LOCAL = "127.0.0.1"


@dataclass(frozen=True)
class Placement:
    node: str | None       # the node's hostname
    addr: str | None       # the node's address; None: no traffic for now
    state: str             # what the runtime last saw of its task ("running", ...)
    task: str | None = None


def directory(data: Path) -> Path:
    return DataDir(data).placements


def path(data: Path, instance_name: str) -> Path:
    return DataDir(data).placement(instance_name)


def instance_name(spec_json) -> str | None:
    """The home directory's name, from an instance's spec (an InstanceSpec,
    None for a row that cannot be read, or the column's JSON)."""
    if spec_json is None or hasattr(spec_json, "instance_name"):
        return spec_json.instance_name if spec_json is not None else None
    try:
        home = json.loads(spec_json).get("home")
    except (ValueError, AttributeError):
        return None
    return Path(home).name if isinstance(home, str) and home else None


def write(file: Path, placement: Placement) -> None:
    """Written by whatever follows the instance, at path(DATA, NAME)."""
    write_json(file, {"node": placement.node, "addr": placement.addr,
                      "state": placement.state, "task": placement.task})


def forget(data: Path, name: str) -> None:
    path(data, name).unlink(missing_ok=True)


def read(data: Path, name: str | None) -> Placement | None:
    """The instance's placement; None when it runs on this host (no file)."""
    if not name:
        return None
    d = read_json(path(data, name))
    if not isinstance(d, dict):
        return None
    addr = d.get("addr")
    node = d.get("node")
    return Placement(node if isinstance(node, str) else None,
                     addr if isinstance(addr, str) and addr else None,
                     str(d.get("state") or ""), d.get("task") if isinstance(d.get("task"), str)
                     else None)


def of(data: Path, spec_json: str) -> Placement | None:
    return read(data, instance_name(spec_json))


def address(data: Path, spec_json: str) -> str | None:
    """The address to reach the instance at: 127.0.0.1 on this host, the
    node's under the swarm runtime, None while it is placed nowhere."""
    placed = of(data, spec_json)
    return LOCAL if placed is None else placed.addr
