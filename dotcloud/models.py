"""Plain records of the state store: frozen dataclasses, no behaviour."""
from dataclasses import dataclass

from .desired import Desired, InstanceSpec, InstanceState


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    created: float


@dataclass(frozen=True)
class Key:
    fingerprint: str
    user: str
    keytype: str
    key: str
    created: float


@dataclass(frozen=True)
class App:
    name: str
    owner: str
    created: float
    generation: int | None   # the active generation's id


@dataclass(frozen=True)
class Release:
    id: int
    app: str
    number: int              # per-app: v1, v2, ...
    revision: str            # git sha (or a rsync-... name)
    build: int               # number of the release whose artifacts this one runs
    user: str
    created: float
    status: str              # building, built, failed, active, retired, pruned
    reason: str
    description: str
    config: str              # JSON: variables at release time


@dataclass(frozen=True)
class Generation:
    id: int
    app: str
    release: int             # Release.id
    state: str               # starting, active, draining, retired, failed
    created: float


@dataclass(frozen=True)
class Instance:
    id: int
    app: str
    generation: int
    service: str
    number: int
    port: int
    desired: Desired | str   # pending (postinstall), run, stop
    state: InstanceState | str   # new, starting, running, backoff, crashed, stopping, stopped
    pid: int | None          # the shim's pid
    restarts: int
    last_exit: int | None
    started: float | None
    updated: float
    spec: InstanceSpec | None    # what it should run; None: a row that cannot be read
    spec_error: str | None = None   # why it cannot

    @property
    def label(self) -> str:
        return f"{self.service}.{self.number}"
