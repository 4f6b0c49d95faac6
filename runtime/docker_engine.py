"""What the docker runtime's parts share: the engine connection, base images, names.

Builds (runtime.docker_build) run in containers of a per-type base image,
on the host network, with the platform's own paths bind-mounted at the same
place, so every path a build writes into a release means the same inside
and outside; the release's image (runtime.docker_image) keeps those paths,
and instances (runtime.docker_launcher) run it. Containers and images are
named and labelled after the data directory they belong to, so two
platforms on one engine never touch each other's. This module never starts
a container; it removes only the platform's own (`sweep`).
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import datetime
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound
from requests.exceptions import RequestException

# Creating a container copies its image on some storage drivers (vfs): slow.
API_TIMEOUT = 300
LABEL_DATA = "dotcloud.data"
NODE_TYPES = frozenset({"nodejs"})
UNSAFE_NAME_RE = re.compile(r"[^a-zA-Z0-9_.-]+")
# What the engine may raise at any call: its own errors and the transport's.
ENGINE_ERRORS = (DockerException, RequestException, OSError)


class EngineError(Exception):
    """The engine cannot do what was asked; the message says what to do about it."""


def connect() -> docker.DockerClient:
    """A client of the engine named by DOCKER_HOST (default: the local socket)."""
    try:
        client = docker.from_env(timeout=API_TIMEOUT)
        client.ping()
    except ENGINE_ERRORS as e:
        raise EngineError(f"the docker engine is not reachable ({short(e)}); start dockerd "
                          "or set DOCKER_HOST") from None
    return client


def image_id(client: docker.DockerClient, name: str) -> str:
    try:
        return client.images.get(name).id
    except ImageNotFound:
        raise EngineError(f"docker image {name} not found: pull it, or build it offline with "
                          "tests/docker/images.sh") from None
    except ENGINE_ERRORS as e:
        raise EngineError(f"docker image {name}: {short(e)}") from None


def base_image(settings, service_type: str) -> str:
    """The configured base image for a service type (node for nodejs, else python)."""
    if service_type in NODE_TYPES:
        return settings.docker_node_image
    return settings.docker_python_image


def data_id(data: Path) -> str:
    """A short, stable name for one data directory."""
    return hashlib.sha256(os.fsencode(os.path.abspath(data))).hexdigest()[:10]


def container_name(data: Path, *parts: str) -> str:
    """`dotcloud-<data id>-<parts>`, with what a container name cannot hold replaced."""
    tail = "-".join(UNSAFE_NAME_RE.sub("_", p) for p in parts)
    return f"dotcloud-{data_id(data)}-{tail}"[:250]


def remove(client: docker.DockerClient, name: str) -> bool:
    """Remove the container called `name` whatever its state; True if there was one."""
    try:
        client.api.remove_container(name, force=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as e:
        if e.status_code == 409:    # already being removed
            return True
        raise
    return True


def sweep(client: docker.DockerClient, data: Path, keep: set[str], build_age: float,
          now: float | None = None) -> list[str]:
    """Remove the containers of this data directory that nothing will use again.

    `keep` holds the names of the instance containers that may still be
    used: those of every instance that should run or whose shim is still
    alive (its launcher removes its own container when it ends). Every
    other instance container goes, running or not (a shim killed -9 leaves
    its container behind); a build or postinstall container goes when it
    stopped or is older than `build_age` seconds (its pipeline died).
    Returns the names removed. Containers of other data directories, and
    anything not made by the platform, are never touched.
    """
    now = time.time() if now is None else now
    removed = []
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_DATA}={data_id(data)}"}):
        name = c.name
        if "dotcloud.instance" in c.labels:
            if name in keep:
                continue
        else:
            created = _created(c.attrs.get("Created", ""))
            if c.status == "running" and now - created < build_age:
                continue
        if remove(client, name):
            removed.append(name)
    return removed


def _created(stamp: str) -> float:
    """The engine's RFC 3339 time (nanoseconds, Z) as a timestamp; 0 if unreadable."""
    try:
        return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0


def user() -> str:
    """Containers run as the platform's own user, like the process runtime's instances."""
    return f"{os.getuid()}:{os.getgid()}"


def short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
