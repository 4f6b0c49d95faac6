"""The one settings object, built at the edge from flags, environment and
the data directory's optional config file (DATA/config.yml).

Precedence: command-line flag > DATA/config.yml > built-in default.
"""
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from .datadir import DataDir
from .errors import UsageError
from .resources import Limits, parse_limits


@dataclass(frozen=True)
class Settings:
    data: Path
    bind: str = "127.0.0.1"
    ssh_port: int = 2222
    http_port: int = 8080
    admin_port: int = 0
    domain: str = "localhost"
    runtime: str = "process"
    log_json: bool = False
    keep_releases: int = 5
    max_push_bytes: int = 512 * 1024 * 1024
    # A build's release on disk, its dependencies included (buildpacks.disklimit).
    max_release_bytes: int = 2 * 1024 ** 3
    drain_timeout: float = 30.0
    stop_grace: float = 10.0
    build_timeout: float = 1200.0
    # HTTPS (router) and certificates (dotcloud/tlsstore.py); 0 turns HTTPS off.
    https_port: int = 8443
    tls_cert: str = ""          # a certificate for *.DOMAIN (PEM file, chain included)
    tls_key: str = ""
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str = ""
    acme_ca_bundle: str = ""    # the CA the ACME server's own HTTPS is signed by
    acme_retry_first: float = 60.0      # seconds after a failed order; doubles each time
    acme_retry_max: float = 6 * 3600.0  # ...up to this
    # SSH connections that have not authenticated: closed after the grace
    # time, and capped per source address and in total.
    ssh_login_grace: float = 30.0
    ssh_max_unauthenticated: int = 128
    ssh_max_unauthenticated_per_source: int = 32
    build_memory_bytes: int = 4 * 1024 ** 3
    # Limits of a service that sets none in its `limits:` (each field on its
    # own): its instances, builds, hooks and `run` commands (runtime.cgroups).
    default_limits: Limits = Limits(memory_bytes=1024 ** 3, processes=1024)
    # A build step's (pip, npm, yarn, prebuild, buildscript...) where its service's
    # `limits: build:` sets none, and never below the service's own limits: a
    # TypeScript or webpack build peaks at 1-2 GiB for minutes, while the app it
    # makes often runs in a tenth of that (Heroku also builds with more than a dyno).
    default_build_limits: Limits = Limits(memory_bytes=2 * 1024 ** 3, processes=1024)
    port_range: tuple = (20000, 29999)
    # Each app's own uid and gid (dotcloud.appusers), first-last inclusive.
    app_uid_range: tuple = (60000, 64999)
    # Base images of the docker runtime, per language (builds and instances).
    docker_python_image: str = "python:3.12-slim"
    docker_node_image: str = "node:22-slim"
    # The swarm runtime's data services (postgresql, redis) run this image on
    # their node: postgres, redis-server and nss_wrapper (tests/docker/images.sh).
    docker_data_image: str = "dotcloud/data:bookworm"
    # The swarm runtime's registry (HOST:PORT): release images are pushed
    # there and pulled by the nodes. Empty: instances run on the manager only.
    registry: str = ""
    # Interpreters a build may choose from besides those found on the host
    # (/usr/bin, PATH, pyenv's versions): paths of python3.X / node binaries.
    python_interpreters: tuple = ()
    node_interpreters: tuple = ()
    # The Python version of services that ask for none ("3.12": the newest
    # installed 3.12.x); empty: the interpreter the platform runs on.
    python_version: str = ""

    @property
    def paths(self) -> DataDir:
        """Every path of the data directory (dotcloud.datadir)."""
        return DataDir(self.data)

    def url(self, app: str) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{app}.{self.domain}{port}/"


REGISTRY_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
LISTS = ("port_range", "app_uid_range", "python_interpreters", "node_interpreters")


def default_data_dir() -> Path:
    env = os.environ.get("DOTCLOUD_DATA")
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "dotcloud"


def load(data: Path | None = None, **overrides) -> Settings:
    """Build settings; overrides whose value is None are ignored."""
    data = Path(data or default_data_dir()).absolute()
    values: dict = {}
    config = DataDir(data).config
    if config.exists():
        try:
            loaded = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{config}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError(f"{config}: expected a mapping of setting: value")
        known = {f.name for f in fields(Settings)} - {"data"}
        for key, value in loaded.items():
            key = str(key).replace("-", "_")
            if key not in known:
                raise UsageError(f"{config}: unknown setting '{key}'")
            if key in LISTS:
                if not isinstance(value, (list, tuple)):
                    raise UsageError(f"{config}: '{key}' must be a list")
                value = tuple(str(v) for v in value) if key not in (
                    "port_range", "app_uid_range") else tuple(value)
            if key == "app_uid_range" and not _uid_range(value):
                raise UsageError(f"{config}: 'app_uid_range' must be two uids [FIRST, LAST] "
                                 "with 1000 <= FIRST <= LAST < 2147483647, e.g. [60000, 64999]")
            if key == "python_version" and not isinstance(value, str):
                # Unquoted, YAML reads 3.10 as the number 3.1.
                raise UsageError(f"{config}: 'python_version' must be quoted, e.g. \"3.12\"")
            if key == "acme_directory" and not str(value).startswith(("https://", "http://")):
                raise UsageError(f"{config}: 'acme_directory' must be the URL of an ACME "
                                 "directory, e.g. https://acme-v02.api.letsencrypt.org/directory")
            if key in ("default_limits", "default_build_limits"):
                try:
                    value = parse_limits(value)
                except ValueError as e:
                    raise UsageError(f"{config}: {key}: {e}") from None
            if key == "registry" and value and not REGISTRY_RE.fullmatch(str(value)):
                raise UsageError(f"{config}: 'registry' must be HOST:PORT (or HOST), without "
                                 f"a scheme or path, e.g. 10.0.0.5:5000; got {value!r}")
            if key == "acme_ca_bundle" and value and not Path(str(value)).is_file():
                raise UsageError(f"{config}: 'acme_ca_bundle' {value} is not a file")
            if key == "max_release_bytes" and (
                    isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise UsageError(f"{config}: 'max_release_bytes' must be a number of bytes "
                                 f"above 0, e.g. 2147483648 (2 GiB); got {value!r}")
            values[key] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(Settings(data=data), **values)
    settings.paths.ensure()
    return settings


def _uid_range(value) -> bool:
    # Below 1000 are the host's system accounts; 2**31-1 and up are not uids.
    return (len(value) == 2 and all(type(v) is int for v in value)
            and 1000 <= value[0] <= value[1] < 2 ** 31 - 1)
