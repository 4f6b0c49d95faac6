"""The plain data a build file describes: services, health checks, warnings.

These are frozen values, built once by the parser (or by tree detection) and
read by the builder, the pipeline and the runtime. `to_dict`/`from_dict` give
a JSON-safe form for the release record. Nothing here reads files or
validates user input: that is `buildpacks.schema`'s job; `from_dict` trusts
data this module wrote itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from dotcloud.errors import BuildError
from dotcloud.frozen import freeze, thaw
from dotcloud.resources import Limits

TYPES = ("python", "python-worker", "nodejs", "static", "custom", "dockerfile", "postgresql",
         "redis")


class BuildfileError(BuildError):
    """The build file (or the tree it describes) is unusable; says where and why."""


def _empty() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True)
class Healthcheck:
    path: str = "/"
    timeout: float = 30.0
    interval: float = 0.5


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    type: str
    approot: str = "."
    environment: Mapping[str, str] = field(default_factory=_empty)
    requirements: tuple[str, ...] = ()
    prebuild: str | None = None
    postbuild: str | None = None
    processes: Mapping[str, str] = field(default_factory=_empty)
    config: Mapping[str, Any] = field(default_factory=_empty)
    instances: int = 1
    healthcheck: Healthcheck = field(default_factory=Healthcheck)
    buildscript: str | None = None
    # Run once per deploy, before the new instances take traffic (a Procfile's
    # `release:` line, or the build file's `release` key).
    release: str | None = None
    # The service's own `limits:`; unset fields take the platform's default_limits.
    limits: Limits = field(default_factory=Limits)
    # Its build's own (`limits: {build: {...}}`); unset fields: the larger of
    # default_build_limits and its run limits (dotcloud.resources.build_limits).
    build_limits: Limits = field(default_factory=Limits)
    # Node labels its instances must run on (`placement:`, swarm runtime).
    placement: Mapping[str, str] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        # Callers may hand in plain dicts and lists; store them read-only so a
        # spec shared between threads can never change under a reader.
        object.__setattr__(self, "environment", freeze(
            {k: str(v) for k, v in dict(self.environment).items()}))
        object.__setattr__(self, "processes", freeze(dict(self.processes)))
        object.__setattr__(self, "config", freeze(dict(self.config)))
        object.__setattr__(self, "placement", freeze(
            {str(k): str(v) for k, v in dict(self.placement).items()}))
        object.__setattr__(self, "requirements", tuple(self.requirements))

    def __hash__(self) -> int:
        # The generated hash would fail on the read-only mappings.
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "approot": self.approot,
            "environment": dict(self.environment),
            "requirements": list(self.requirements),
            "prebuild": self.prebuild,
            "postbuild": self.postbuild,
            "processes": dict(self.processes),
            "config": thaw(self.config),
            "instances": self.instances,
            "healthcheck": {"path": self.healthcheck.path,
                            "timeout": self.healthcheck.timeout,
                            "interval": self.healthcheck.interval},
            "buildscript": self.buildscript,
            "release": self.release,
            # Only when set: a data service's definition (and so whether a
            # push restarts it) stays what it was for files without limits.
            **({"limits": self.limits.to_dict()} if not self.limits.empty else {}),
            **({"build_limits": self.build_limits.to_dict()}
               if not self.build_limits.empty else {}),
            **({"placement": dict(self.placement)} if self.placement else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ServiceSpec":
        hc = d.get("healthcheck") or {}
        return cls(
            name=d["name"],
            type=d["type"],
            approot=d.get("approot", "."),
            environment=d.get("environment") or {},
            requirements=tuple(d.get("requirements") or ()),
            prebuild=d.get("prebuild"),
            postbuild=d.get("postbuild"),
            processes=d.get("processes") or {},
            config=d.get("config") or {},
            instances=int(d.get("instances", 1)),
            healthcheck=Healthcheck(path=hc.get("path", "/"),
                                    timeout=float(hc.get("timeout", 30.0)),
                                    interval=float(hc.get("interval", 0.5))),
            buildscript=d.get("buildscript"),
            release=d.get("release"),
            limits=Limits.from_dict(d.get("limits")),
            build_limits=Limits.from_dict(d.get("build_limits")),
            placement=d.get("placement") or {},
        )


@dataclass(frozen=True)
class Buildfile:
    services: Mapping[str, ServiceSpec]
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))
        object.__setattr__(self, "warnings", tuple(self.warnings))
