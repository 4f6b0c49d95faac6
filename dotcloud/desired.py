"""The desired state the deployer writes and every runtime reads: frozen,
typed, and the same whatever runs the instances (processes, docker, swarm).

`Manifest` is what a build made of a release (`manifest.json` in the
release directory, written last and never changed). `InstanceSpec` is what
one instance should run (the `instances.spec` column): its processes as
argv, its environment, home and log, and optional limits, user, image and
node that a runtime may honour. Nothing here says how an instance runs;
that is the runtime's choice. Both read what older versions wrote (a spec
whose processes are docker launcher argv, a manifest without a release
command). `Desired` and `InstanceState` are `str` enums, so the store keeps
the same text. Nothing here touches the store, a process or the network.
"""
from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import DotcloudError
from .frozen import freeze, thaw
from .fsutil import write_json
from .resources import Limits  # noqa: F401 (one type of limits for all: dotcloud.resources)

# Service types served by the platform's own data servers (one instance,
# their data in DATA/services/APP/SERVICE), never by an app's processes.
DATA_TYPES = ("postgresql", "redis")


class Desired(enum.StrEnum):
    PENDING = "pending"     # created; its postinstall has not run yet
    RUN = "run"
    STOP = "stop"


class InstanceState(enum.StrEnum):
    """What the runtime last observed of an instance."""
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    CRASHED = "crashed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Kind(enum.StrEnum):
    APP = "app"             # the app's own processes
    DATA = "data"           # a platform data server (postgresql, redis)


class ManifestError(DotcloudError):
    """A manifest.json that cannot be read; the message names the file."""


class SpecError(ValueError):
    """An instance spec that cannot be read; the message is one line."""


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


# -- the release manifest ----------------------------------------------------

@dataclass(frozen=True)
class Healthcheck:
    path: str = "/"
    timeout: float = 30.0
    interval: float = 0.5


@dataclass(frozen=True)
class ServiceManifest:
    """One service of a built release."""
    name: str
    spec: Mapping[str, Any]     # its build-file entry as built (buildpacks' ServiceSpec.to_dict())
    src: str                    # its approot inside the release
    http: bool                  # it serves HTTP on $PORT
    processes: Mapping[str, tuple[str, ...]]   # name -> argv ({port}, {datadir} left to fill)
    env: Mapping[str, str] = field(default_factory=dict)   # what the build adds (PATH, ...)
    image: str | None = None    # its image ID, when built for a runtime that runs images

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", freeze(dict(self.spec)))
        object.__setattr__(self, "processes", MappingProxyType(
            {k: tuple(v) for k, v in dict(self.processes).items()}))
        object.__setattr__(self, "env", _frozen(self.env))

    def __hash__(self) -> int:
        # The generated hash would fail on the read-only mappings.
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def type(self) -> str:
        return self.spec["type"]

    @property
    def kind(self) -> Kind:
        return Kind.DATA if self.type in DATA_TYPES else Kind.APP

    @property
    def instances(self) -> int:
        return int(self.spec.get("instances", 1))

    @property
    def environment(self) -> Mapping[str, str]:
        """The build file's `environment` for the service."""
        return self.spec.get("environment") or MappingProxyType({})

    @property
    def healthcheck(self) -> Healthcheck:
        hc = self.spec.get("healthcheck") or {}
        return Healthcheck(hc.get("path", "/"), float(hc.get("timeout", 30.0)),
                           float(hc.get("interval", 0.5)))

    @property
    def limits(self) -> Limits:
        """The build file's `limits:` (unset fields: the platform's default_limits)."""
        return Limits.from_dict(self.spec.get("limits"))

    @property
    def release(self) -> str | None:
        """Its release command (builds made before release commands existed have none)."""
        return self.spec.get("release") or None

    def to_dict(self) -> dict:
        return {"spec": thaw(self.spec), "src": self.src, "http": self.http,
                "processes": {k: list(v) for k, v in self.processes.items()},
                "env": dict(self.env), **({"image": self.image} if self.image else {})}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> "ServiceManifest":
        return cls(name=name, spec=d["spec"], src=d["src"], http=bool(d.get("http")),
                   processes=d.get("processes") or {}, env=d.get("env") or {},
                   image=d.get("image"))


@dataclass(frozen=True)
class Manifest:
    """What a build made of a release: every service, ready to deploy."""
    revision: str
    built: float
    services: Mapping[str, ServiceManifest]

    FILE = "manifest.json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))

    def to_dict(self) -> dict:
        return {"revision": self.revision, "built": self.built,
                "services": {n: s.to_dict() for n, s in self.services.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        return cls(revision=d.get("revision", ""), built=float(d.get("built") or 0.0),
                   services={n: ServiceManifest.from_dict(n, s)
                             for n, s in (d.get("services") or {}).items()})

    @classmethod
    def load(cls, path: Path) -> "Manifest | None":
        """The manifest at `path`; None when there is none (not built, or pruned)."""
        try:
            data = json.loads(Path(path).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ManifestError(f"{path}: cannot read the release manifest ({e})") from None
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ManifestError(f"{path}: not a release manifest "
                                f"({type(e).__name__}: {e})") from None

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def new(cls, revision: str, services: Mapping[str, ServiceManifest]) -> "Manifest":
        return cls(revision, time.time(), services)


# -- the instance spec ---------------------------------------------------------

@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    cwd: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))


@dataclass(frozen=True)
class DataService:
    type: str               # postgresql, redis
    born: int               # the generation it was created for (moves do not change it)


@dataclass(frozen=True)
class InstanceSpec:
    """What one instance should run, whatever runs it."""
    app: str
    service: str
    number: int
    generation: int          # the generation it was created for
    port: int
    service_type: str        # "" in rows of older versions, which did not say
    processes: tuple[ProcessSpec, ...]
    env: Mapping[str, str]
    home: str
    log: str                 # relative to DATA/logs: APP/SERVICE.N.log
    release_dir: str | None = None
    data_service: DataService | None = None
    limits: Limits = field(default_factory=Limits)
    user: tuple[int, int] | None = None     # (uid, gid) to run as; None: the platform's own
    image: str | None = None                # the release's image, for runtimes that run images
    node: str | None = None                 # where it runs, for runtimes with several nodes
    # Node labels it must run on (the build file's `placement`), for runtimes with nodes.
    placement: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "processes", tuple(self.processes))
        object.__setattr__(self, "env", _frozen(self.env))
        object.__setattr__(self, "placement", _frozen(self.placement))
        if self.user is not None:
            object.__setattr__(self, "user", tuple(self.user))

    def __hash__(self) -> int:
        # The generated hash would fail on the read-only mappings.
        return hash(self.to_json())

    @property
    def kind(self) -> Kind:
        return Kind.DATA if self.data_service is not None else Kind.APP

    @property
    def label(self) -> str:
        return f"{self.service}.{self.number}"

    @property
    def instance_name(self) -> str:
        """Unique within a data directory: the name of its home directory."""
        return Path(self.home).name

    def to_json(self) -> str:
        return json.dumps({
            "app": self.app, "service": self.service, "number": self.number,
            "generation": self.generation, "port": self.port,
            "service_type": self.service_type,
            "processes": {p.name: {"argv": list(p.argv), "cwd": p.cwd} for p in self.processes},
            "env": dict(self.env), "home": self.home, "log": self.log,
            "release_dir": self.release_dir,
            "data_service": None if self.data_service is None else {
                "type": self.data_service.type, "born": self.data_service.born},
            "limits": {"memory_bytes": self.limits.memory_bytes, "cpus": self.limits.cpus,
                       "processes": self.limits.processes},
            "user": None if self.user is None else list(self.user),
            "image": self.image, "node": self.node, "placement": dict(self.placement),
        })

    @classmethod
    def from_json(cls, text: str, **row: Any) -> "InstanceSpec":
        """Read a spec column. `row` gives what rows of older versions left
        out (app, service, number, generation, port: the row's own columns).
        Raises SpecError saying what is wrong."""
        try:
            d = json.loads(text)
        except ValueError as e:
            raise SpecError(f"instance spec is not JSON ({e})") from None
        if not isinstance(d, dict):
            raise SpecError("instance spec is not a JSON object")
        try:
            return cls._from_dict(d, row)
        except SpecError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SpecError(f"instance spec is incomplete or wrong "
                            f"({type(e).__name__}: {e})") from None

    @classmethod
    def _from_dict(cls, d: dict, row: Mapping[str, Any]) -> "InstanceSpec":
        def given(key):
            return d[key] if d.get(key) is not None else row[key]
        procs = d["processes"]
        if not isinstance(procs, dict) or not procs:
            raise SpecError("instance spec has no processes")
        processes = []
        first_env = None
        for name, proc in procs.items():
            argv = _legacy_unwrapped(tuple(proc["argv"]))
            if not argv or not all(isinstance(a, str) for a in argv):
                raise SpecError(f"instance spec: process {name!r} has no command")
            processes.append(ProcessSpec(str(name), argv, str(proc["cwd"])))
            if first_env is None:
                first_env = proc.get("env")
        env = d.get("env") if d.get("env") is not None else first_env
        if not isinstance(env, dict):
            raise SpecError("instance spec has no environment")
        ds = d.get("data_service")
        data = DataService(str(ds["type"]), int(ds["born"])) if ds else None
        limits = d.get("limits") or {}
        user = d.get("user")
        return cls(
            app=given("app"), service=given("service"), number=int(given("number")),
            generation=int(given("generation")), port=int(given("port")),
            service_type=d.get("service_type") or (data.type if data else ""),
            processes=tuple(processes), env={str(k): str(v) for k, v in env.items()},
            home=str(d["home"]), log=str(d["log"]), release_dir=d.get("release_dir"),
            data_service=data,
            limits=Limits(limits.get("memory_bytes"), limits.get("cpus"),
                          limits.get("processes")),
            user=None if user is None else (int(user[0]), int(user[1])),
            image=d.get("image"), node=d.get("node"),
            placement={str(k): str(v) for k, v in (d.get("placement") or {}).items()})


def _legacy_unwrapped(argv: tuple) -> tuple:
    """Specs written before the runtime chose how instances run held, under
    docker, `python .../docker_launcher.py OPTIONS -- ARGV`: their ARGV (which
    the runtime wraps again as it sees fit; the base image they ran is its
    default when a spec names no image)."""
    if len(argv) > 2 and str(argv[1]).endswith("docker_launcher.py") and "--" in argv:
        return argv[argv.index("--") + 1:]
    return argv
