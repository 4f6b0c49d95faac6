"""A dockerfile service's image: its approot's Dockerfile built with BuildKit.

The docker SDK only speaks to the classic builder, and the docker CLI of
version 23 and later needs the buildx plugin for BuildKit; Debian's docker
CLI (20.10, package docker.io) builds with BuildKit itself when
DOCKER_BUILDKIT=1. So the build runs that CLI against the platform's engine
(DOCKER_HOST), with the approot as context, on the host network (RUN steps
reach what the host reaches), its output streamed line by line into the
push, under the build deadline. The image is tagged and labelled like every
release image (runtime.docker_image), so it is pruned with its release.

What only the image knows then goes into the service's manifest: its
command (ENTRYPOINT and CMD; the build file's `processes` win), working
directory and environment. It serves HTTP when it EXPOSEs a port or sets
PORT: instances share the host's network, so each listens on the PORT the
platform gives it, which the push says.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from buildpacks.base import base_env
from dotcloud.desired import ServiceManifest
from dotcloud.errors import BuildError
from runtime.limits import run_limited

DOCKER_CLI = "/usr/bin/docker"     # Debian's, with BuildKit built in
DOCKERFILE = "Dockerfile"
# The platform's own variables, never the image's: where the instance lives.
PLATFORM_ENV = frozenset({"HOME", "PORT", "TMPDIR"})


def build(client, service: ServiceManifest, *, buildargs: Mapping[str, str], timeout: float,
          labels: Mapping[str, str], name: str, log: Callable[[str], None]) -> ServiceManifest:
    """`service` with its image built from its approot's Dockerfile, tagged `name`,
    and what the image says of how it runs. Raises BuildError saying why not."""
    context = Path(service.src)
    if not os.access(DOCKER_CLI, os.X_OK):
        raise BuildError(f"service '{service.name}': type dockerfile builds with BuildKit "
                         f"through Debian's docker CLI ({DOCKER_CLI}, package docker.io), "
                         "which is not installed")
    log(f"Building {DOCKERFILE} with BuildKit")
    with tempfile.TemporaryDirectory(prefix="dotcloud-dockerfile-") as tmp:
        iidfile = Path(tmp) / "iid"
        argv = [DOCKER_CLI, "build", "--progress", "plain", "--network", "host",
                "--file", str(context / DOCKERFILE), "--tag", name, "--iidfile", str(iidfile)]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        for key, value in {**_proxies(), **buildargs}.items():
            argv += ["--build-arg", f"{key}={value}"]
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        try:
            status = run_limited(argv + [str(context)], cwd=str(context), env=env,
                                 timeout=timeout, memory_bytes=None, on_line=log)
        except TimeoutError:
            raise BuildError(f"service '{service.name}': docker build timed out after "
                             f"{timeout:g}s") from None
        if status != 0:
            raise BuildError(f"service '{service.name}': docker build failed (exit {status})")
        image = iidfile.read_text().strip()
    return described(client, service, image, log)


def described(client, service: ServiceManifest, image: str,
              log: Callable[[str], None]) -> ServiceManifest:
    """`service` running `image` as the image's own config says."""
    config = client.images.get(image).attrs.get("Config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    ports = sorted(config.get("ExposedPorts") or {})
    processes = dict(service.processes)
    http = service.http
    if not processes:
        command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        if not command:
            raise BuildError(f"service '{service.name}': its {DOCKERFILE} has no CMD or "
                             "ENTRYPOINT, and dotcloud.yml no 'processes'")
        http = bool(ports) or "PORT" in env
        processes = {"web" if http else "worker": tuple(command)}
    if http:
        said = f"EXPOSEs {', '.join(ports)}" if ports else f"sets PORT={env.get('PORT', '')}"
        log(f"The image {said}; here instances share the host's network: each listens on "
            "the port in $PORT, which the platform sets")
    return dataclasses.replace(
        service, image=image, processes=processes, http=http,
        src=config.get("WorkingDir") or "/",
        env={k: v for k, v in env.items() if k not in PLATFORM_ENV})


def _proxies() -> dict[str, str]:
    """The platform's proxy settings (predefined build arguments BuildKit passes to RUN)."""
    return {k: v for k, v in base_env().items() if k.lower().endswith("_proxy")}
