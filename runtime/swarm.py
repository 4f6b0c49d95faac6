"""What the swarm runtime asks of Docker Swarm: the swarm itself, nodes,
release images in the registry, and the services that are instances.

The platform drives the swarm that its engine (DOCKER_HOST) manages; an
engine in no swarm is made a one-node swarm (`ensure_swarm`). Each process
of an instance is one swarm service (runtime.swarm_launcher creates and
follows it): one replica on the host network, named and labelled after the
data directory like the docker runtime's containers, so two platforms on
one swarm never touch each other's services. Release images are pushed to
the configured registry (`registry: HOST:PORT`) and pulled by the nodes;
without one, a lone manager runs them from its own engine.

This module never creates a service; it removes only the platform's own.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from runtime import docker_engine

LABEL_INSTANCE = "dotcloud.instance"
LABEL_PROCESS = "dotcloud.process"
LABEL_APP = "dotcloud.app"
LABEL_RUN = "dotcloud.run"     # a `run` command's one-off task (runtime.swarm_run)
# A run's service whose task ended is its launcher's to remove (once it read
# the rest of the output): the sweep leaves it that long.
RUN_ENDED_GRACE = 60.0
TASK_ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
NAME_MAX = 63          # a service name is a DNS label
UNSAFE_RE = re.compile(r"[^a-z0-9-]+")


class SwarmError(docker_engine.EngineError):
    """The swarm cannot do what was asked; the message says why, in one line."""


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    addr: str
    role: str               # manager, worker
    state: str              # ready, down, unknown
    availability: str       # active, pause, drain
    labels: dict


def ensure_swarm(client: docker.DockerClient) -> str:
    """Make the engine a swarm manager if it is in no swarm; say what it is."""
    try:
        info = client.info().get("Swarm") or {}
    except docker_engine.ENGINE_ERRORS as e:
        raise SwarmError(f"the docker engine is not reachable ({docker_engine.short(e)})") \
            from None
    state = info.get("LocalNodeState", "")
    if state == "active":
        if not info.get("ControlAvailable"):
            raise SwarmError("the docker engine is a swarm worker; the platform needs a manager "
                             "(set DOCKER_HOST to a manager's engine)")
        return f"swarm manager of {info.get('Nodes', '?')} node(s)"
    if state not in ("inactive", ""):
        raise SwarmError(f"the docker engine's swarm is {state}: fix it with `docker swarm` "
                         "first")
    try:
        client.swarm.init()
    except docker.errors.APIError as e:
        if "advertise" not in str(e):
            raise SwarmError(f"cannot make a one-node swarm: {docker_engine.short(e)}") from None
        # Several addresses and none chosen: a lone node needs none other nodes reach.
        try:
            client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        except docker.errors.APIError as e2:
            raise SwarmError(f"cannot make a one-node swarm: {docker_engine.short(e2)}") \
                from None
    return "a new one-node swarm"


def nodes(client: docker.DockerClient) -> list[Node]:
    out = []
    for n in client.nodes.list():
        a = n.attrs
        spec, status = a.get("Spec") or {}, a.get("Status") or {}
        out.append(Node(id=n.id, hostname=(a.get("Description") or {}).get("Hostname", n.id),
                        addr=status.get("Addr", ""), role=spec.get("Role", ""),
                        state=status.get("State", ""),
                        availability=spec.get("Availability", ""),
                        labels=dict(spec.get("Labels") or {})))
    return sorted(out, key=lambda n: n.hostname)


def manager_addr(client: docker.DockerClient) -> str | None:
    """The address this engine's node advertises (None when it says none)."""
    try:
        addr = ((client.info().get("Swarm") or {}).get("NodeAddr") or "").strip()
    except docker_engine.ENGINE_ERRORS:
        return None
    return addr or None


def service_name(data: Path, instance: str, process: str) -> str:
    """`dc-<data id>-<instance>-<process>`, a DNS label (a hash when too long)."""
    tail = UNSAFE_RE.sub("-", f"{instance}-{process}".lower()).strip("-")
    name = f"dc-{docker_engine.data_id(data)}-{tail}"
    if len(name) > NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[:NAME_MAX - 13].rstrip('-')}-{digest}"
    return name


def registry_name(registry: str, name: str) -> str:
    return f"{registry.rstrip('/')}/{name}" if registry else name


def publish_image(client: docker.DockerClient, image: str, name: str, registry: str) -> str:
    """The reference nodes pull `image` (an ID or a name of this engine) by:
    tagged `name` under the registry and pushed there (layers the registry
    has are not sent again). Without a registry: `name` on this engine only."""
    target = registry_name(registry, name)
    repo, _, tag = target.rpartition(":")
    try:
        client.images.get(image).tag(repo, tag)
    except docker.errors.ImageNotFound:
        raise SwarmError(f"image {image} is not on the manager's engine: push the app "
                         "again") from None
    if not registry:
        return target
    for chunk in client.api.push(repo, tag=tag, stream=True, decode=True):
        if isinstance(chunk, dict) and chunk.get("error"):
            raise SwarmError(f"cannot push {target}: {' '.join(str(chunk['error']).split())}")
    return target


def services(client: docker.DockerClient, data: Path) -> list:
    return client.services.list(filters={"label": f"{docker_engine.LABEL_DATA}="
                                                   f"{docker_engine.data_id(data)}"})


def remove_service(client: docker.DockerClient, name: str) -> bool:
    try:
        client.api.remove_service(name)
    except docker.errors.NotFound:
        return False
    return True


def placements(client: docker.DockerClient, data: Path) -> dict[str, list[dict]]:
    """Node hostname -> the platform's running tasks there ({app, instance, process})."""
    by_id = {n.id: n.hostname for n in nodes(client)}
    out: dict[str, list[dict]] = {h: [] for h in by_id.values()}
    for service in services(client, data):
        labels = (service.attrs.get("Spec") or {}).get("Labels") or {}
        for task in service.tasks(filters={"desired-state": "running"}):
            if (task.get("Status") or {}).get("State") != "running":
                continue
            host = by_id.get(task.get("NodeID", ""), task.get("NodeID", "?"))
            out.setdefault(host, []).append({"app": labels.get(LABEL_APP, ""),
                                             "instance": labels.get(LABEL_INSTANCE, ""),
                                             "process": labels.get(LABEL_PROCESS, "")})
    return out


def sweep(client: docker.DockerClient, data: Path, keep: set[str],
          run_max_age: float | None = None) -> list[str]:
    """Remove this data directory's services whose instance is not in `keep`
    (the names of instances that should run or whose shim is alive): those a
    launcher killed -9 left behind; and those of `run` commands whose task
    ended RUN_ENDED_GRACE ago or that are older than `run_max_age` seconds.
    Returns the names removed; services of other data directories are never
    touched."""
    removed = []
    for service in services(client, data):
        labels = (service.attrs.get("Spec") or {}).get("Labels") or {}
        if labels.get(LABEL_INSTANCE) in keep:
            continue
        if LABEL_RUN in labels and not _run_over(service, run_max_age):
            continue
        if remove_service(client, service.name):
            removed.append(service.name)
    return removed


def _run_over(service, max_age: float | None) -> bool:
    """Whether a `run` command's service is nobody's any more: its task ended
    a while ago (its launcher died before removing it), or it ran longer
    than a run may."""
    now = time.time()
    created = docker_engine._created(service.attrs.get("CreatedAt") or "")
    if max_age is not None and created and now - created > max_age:
        return True
    statuses = [t.get("Status") or {} for t in service.tasks()]
    return bool(statuses) and all(s.get("State") in TASK_ENDED for s in statuses) and \
        now - max(docker_engine._created(s.get("Timestamp") or "") for s in statuses) \
        > RUN_ENDED_GRACE
