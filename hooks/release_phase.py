"""The release phase: a service's `release` command, run once per deploy.

It runs after the build and after the deploy's data services accept
connections, before any new instance is launched: in the service's approot,
with the environment its instances get (the build's, the app's variables,
the data services' connection variables) and a fresh home of its own,
under the same executor as postinstall (a container of the service's base
image under the docker runtime). Its output streams into the push. A
non-zero exit or the deadline fails the deploy, so the old release keeps
serving. This module never decides when a deploy runs it.
"""
import shutil
from pathlib import Path
from typing import Mapping

import yaml

from buildpacks.base import shell
from buildpacks.steps import check_step
from dotcloud.desired import ServiceManifest
from dotcloud.errors import DeployError
from dotcloud.fsutil import write_atomic, write_json
from dotcloud.settings import Settings
from runtime.executor import executor_for

from .progress import Progress

TIMEOUT = 600.0     # as postinstall's: migrations may take a while, not forever


def command_of(info: ServiceManifest) -> str | None:
    """The service's release command from its manifest entry (None: it has none)."""
    return info.release


def home_for(settings: Settings, app: str, generation: int, service: str) -> Path:
    return settings.paths.release_home(app, generation, service)


def run(settings: Settings, app: str, service: str, info: ServiceManifest, build_dir: Path,
        home: Path, env: Mapping[str, str], progress: Progress,
        timeout: float = TIMEOUT) -> None:
    """Run the service's release command in `home` (made fresh, removed after).

    Raises DeployError("www: release command failed (exit 1)") or
    DeployError("www: release command timed out after 600s").
    """
    command = command_of(info)
    if command is None:
        return
    log = progress.service(service)
    log(f"Running release command: {command}")
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    env = dict(env, HOME=str(home))
    write_json(home / "environment.json", env)
    write_atomic(home / "environment.yml", yaml.safe_dump(env, default_flow_style=False).encode())
    try:
        with executor_for(settings, app, service, info.type, build_dir,
                          purpose="release", home=home, error=DeployError,
                          limits=info.limits.over(settings.default_limits),
                          # A Dockerfile's service runs it in its own image.
                          image=info.image if info.type == "dockerfile" else None) as executor:
            check_step("release command", shell(command), cwd=Path(info.src), env=env,
                       timeout=timeout, log=log, error=DeployError, executor=executor)
    except DeployError as exc:
        raise DeployError(f"{service}: {exc}") from None
    finally:
        shutil.rmtree(home, ignore_errors=True)
    log("Release command finished")
