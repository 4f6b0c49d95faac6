"""The data directory's layout: every path under DATA, spelled here and only here.

    DATA/config.yml                   the operator's settings (dotcloud.settings)
    DATA/dotcloud.db                  the store (dotcloud.state)
    DATA/ssh_host_ed25519_key         the SSH daemon's host key
    DATA/repos/APP.git                each app's bare repository
    DATA/releases/APP/vN              each build's release (src/, manifest.json)
    DATA/homes/APP/gG-SERVICE.N       an instance's home, one per generation
    DATA/homes/APP/gG-SERVICE.release the release command's home
    DATA/instances/ID/                a shim's spec (shim.json), pid and status
    DATA/logs/APP/SERVICE.N.log       instance logs; DATA/logs/pipeline.log
    DATA/services/APP/SERVICE         a data service's own directory
    DATA/tmp/APP                      the app's private /tmp (runtime.apptmp)
    DATA/cache/                       dependencies shared by every build
    DATA/cache/users/UID              download caches of builds run as app UID
    DATA/tls/NAME/, DATA/acme/        certificates, the ACME account, challenges
    DATA/run/                         sockets, daemon info, locks, the route table,
                                      swarm placements

`Settings.paths` gives the `DataDir` of the platform's data directory;
everyone asks it for a path instead of joining names themselves. Names
(APP, SERVICE) must be validated before they get here. This module only
computes paths; `ensure()` is the one thing it creates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Made at start: what every daemon expects to exist.
CREATED = ("run", "repos", "releases", "cache", "logs", "instances")
HOME_RE = re.compile(r"g(\d+)-")


@dataclass(frozen=True)
class InstanceDir:
    """What the runtime keeps of one instance's shim: DATA/instances/ID."""
    path: Path

    @property
    def spec(self) -> Path:
        return self.path / "shim.json"

    @property
    def pid(self) -> Path:
        return self.path / "shim.pid"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def stderr(self) -> Path:
        """The shims' own stderr, appended and bounded (runtime.shimctl)."""
        return self.path / "shim.err"


@dataclass(frozen=True)
class DataDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def ensure(self) -> None:
        """Create the directories every daemon expects (the rest come on demand)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name in CREATED:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    # -- files at the top --------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    @property
    def db(self) -> Path:
        return self.root / "dotcloud.db"

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    # -- per app -----------------------------------------------------------
    @property
    def repos(self) -> Path:
        return self.root / "repos"

    def repo(self, app: str) -> Path:
        return self.repos / f"{app}.git"

    @property
    def releases_root(self) -> Path:
        return self.root / "releases"

    def releases(self, app: str) -> Path:
        return self.releases_root / app

    def release(self, app: str, build: int) -> Path:
        return self.releases(app) / f"v{build}"

    def all_releases(self) -> list[Path]:
        """Every release directory of every app."""
        return [d for d in self.releases_root.glob("*/v*") if d.is_dir()]

    @property
    def homes_root(self) -> Path:
        return self.root / "homes"

    def homes(self, app: str) -> Path:
        return self.homes_root / app

    def home(self, app: str, generation: int, service: str, number: int) -> Path:
        return self.homes(app) / f"g{generation}-{service}.{number}"

    def release_home(self, app: str, generation: int, service: str) -> Path:
        """Where the release command of `service` runs for one generation."""
        return self.homes(app) / f"g{generation}-{service}.release"

    @staticmethod
    def home_generation(home: Path) -> int | None:
        """The generation a home directory was made for (None: not a home's name)."""
        match = HOME_RE.match(Path(home).name)
        return int(match.group(1)) if match else None

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def app_logs(self, app: str) -> Path:
        return self.logs / app

    def log_name(self, app: str, label: str) -> str:
        """An instance log's name relative to DATA/logs, as instance specs keep it."""
        return f"{app}/{label}.log"

    def log(self, app: str, label: str) -> Path:
        """The log of instance `label` (SERVICE.N) of `app`."""
        return self.log_file(self.log_name(app, label))

    def log_file(self, name: str) -> Path:
        """A log named relative to DATA/logs (an instance spec's `log`)."""
        return self.logs / name

    @property
    def pipeline_log(self) -> Path:
        """What push pipelines print outside a push's own channel."""
        return self.logs / "pipeline.log"

    @property
    def services_root(self) -> Path:
        return self.root / "services"

    def service_data(self, app: str, service: str) -> Path:
        """A data service's own directory (postgresql's cluster, redis' dump)."""
        return self.services_root / app / service

    def app_paths(self, app: str) -> list[Path]:
        """Every directory holding files of `app` alone (destroy removes them)."""
        return [self.repo(app), self.releases(app), self.homes(app), self.app_logs(app),
                self.root / "services" / app, self.app_tmp(app)]

    @property
    def tmps(self) -> Path:
        return self.root / "tmp"

    def app_tmp(self, app: str) -> Path:
        """What the app's processes see as /tmp (runtime.apptmp)."""
        return self.tmps / app

    # -- the runtime -------------------------------------------------------
    @property
    def instances(self) -> Path:
        return self.root / "instances"

    def instance(self, instance_id: int) -> InstanceDir:
        return InstanceDir(self.instances / str(instance_id))

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def tool_caches(self) -> Path:
        """Download caches of builds run as app users, one per uid."""
        return self.cache / "users"

    def tool_cache(self, uid: int) -> Path:
        return self.tool_caches / str(uid)

    # -- certificates ------------------------------------------------------
    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def acme(self) -> Path:
        return self.root / "acme"

    @property
    def challenges(self) -> Path:
        """HTTP-01 tokens the router serves (the ACME client writes them)."""
        return self.acme / "challenges"

    # -- DATA/run: sockets, daemon info, locks ----------------------------
    @property
    def run(self) -> Path:
        return self.root / "run"

    def socket(self, daemon: str) -> Path:
        """The control socket of `runtime`, `router` or `acme`."""
        return self.run / f"{daemon}.sock"

    def daemon_info(self, daemon: str) -> Path:
        """What a running daemon says of itself (`up`, `ssh`, `router`, ...)."""
        return self.run / f"{daemon}.json"

    def daemon_lock(self, daemon: str) -> Path:
        """Held by the one daemon of its kind (`runtime`, `acme`) for this data."""
        return self.run / f"{daemon}.lock"

    @property
    def routes(self) -> Path:
        return self.run / "routes.json"

    @property
    def routes_lock(self) -> Path:
        return self.run / "routes.lock"

    @property
    def placements(self) -> Path:
        """Where each swarm instance's launcher says which node runs it."""
        return self.run / "placement"

    def placement(self, instance_name: str) -> Path:
        return self.placements / f"{instance_name}.json"

    @property
    def app_locks(self) -> Path:
        return self.run / "locks"

    def app_lock(self, app: str) -> Path:
        return self.app_locks / f"{app}.lock"
