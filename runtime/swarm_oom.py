"""Whether a swarm task was killed for memory: what only its node's engine knows.

The swarm reports a task the kernel killed for its memory limit as it would
any SIGKILL: `task: non-zero exit (137)`, exit code 137, no word of memory
(the manager's events carry none either). `State.OOMKilled` is the
container's, on the engine of the node that ran it: the manager's own engine
answers for the tasks it ran; another node's is asked at
NODE_ADDRESS:ENGINE_PORT, the port build nodes listen on for the manager
(runtime.build_nodes, DOTCLOUD_BUILD_ENGINE_PORT), when it listens there.
A task's container stays on its node until its service goes, so the
question must be asked before the service is removed.

`exit_reason()` gives the words the shim and `run` show: `out of memory
(limit 512M)` when the node's engine says so; a hedged line when exit 137
with a memory limit is all there is to go by (no engine could be asked);
None when the task was not killed, or was killed by something else.
"""
from __future__ import annotations

import os

import docker

from dotcloud.resources import format_memory
from runtime import docker_engine

KILLED = 137            # 128 + SIGKILL
ENGINE_PORT = int(os.environ.get("DOTCLOUD_BUILD_ENGINE_PORT", "2375"))


def exit_reason(client: docker.DockerClient, task: dict, node, memory: int | None) -> str | None:
    """Why the task's container ended, when the kernel may have killed it for
    `memory` (bytes, its limit); `node` is its runtime.swarm.Node (or None)."""
    status = task.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    if memory is None or container.get("ExitCode") != KILLED:
        return None
    limit = format_memory(memory)
    killed = _oom_killed(client, container.get("ContainerID") or "", node)
    if killed is None:
        where = node.hostname if node is not None else "its node"
        return (f"killed by SIGKILL, perhaps out of memory (limit {limit}): {where}'s "
                "engine could not be asked")
    return f"out of memory (limit {limit})" if killed else None


def _oom_killed(client: docker.DockerClient, container: str, node) -> bool | None:
    """State.OOMKilled of the container on its node's engine; None: unknown."""
    if not container or node is None:
        return None
    engine, own = client, True
    try:
        if node.id != (client.info().get("Swarm") or {}).get("NodeID"):
            engine, own = docker_engine.client_of(f"tcp://{node.addr}:{ENGINE_PORT}"), False
    except (docker_engine.EngineError, *docker_engine.ENGINE_ERRORS):
        return None
    try:
        state = engine.api.inspect_container(container).get("State") or {}
        return bool(state.get("OOMKilled"))
    except docker_engine.ENGINE_ERRORS:
        return None
    finally:
        if not own:
            engine.close()
