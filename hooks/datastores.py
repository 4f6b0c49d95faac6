"""The deployer's side of data services (redis, postgresql): their persistent
directories, passwords and connection variables, and keeping their running
instance across pushes that leave their definition unchanged.

DATA/services/APP/SERVICE holds the password (mode 0600, made once and
reused), redis.conf or the postgres cluster (pgdata/, initialised once) and
the data. postgres also speaks TLS, with a self-signed certificate made
once (server.crt, server.key): apps written for Heroku connect with
sslmode=require, which checks no certificate but refuses a plain server.
A kept instance's row moves to the new generation, so retiring the old one
does not stop it; a deploy that does not finish moves it back.
Two servers must never run on one data directory: a changed definition
stops the old instance before the new one starts, which interrupts the
service briefly. A new server is ready when it answers its own protocol,
not merely when its port is open (postgres accepts connections while it
still refuses them as "starting up"). Apps written for Heroku find their
one postgresql or redis service as DATABASE_URL / REDIS_URL. This module
never deletes data.

Under the swarm runtime the server runs on its node (runtime.swarm_data),
its files in a volume there, which the task fills on its first start:
DATA/services/APP/SERVICE keeps only the password, postgres's certificate
and key, and the node the service is pinned to; clients connect to that
node's address.
"""
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from buildpacks.datastores import pg_bin, unprivileged
from dotcloud.desired import DATA_TYPES, Kind, ServiceManifest
from dotcloud import selfsigned
from dotcloud import appusers, filemodes
from dotcloud.errors import DeployError
from runtime import privileges
from dotcloud.fsutil import write_atomic
from dotcloud.models import Instance
from dotcloud.settings import Settings
from dotcloud.state import Store

TYPES = DATA_TYPES
LOGINS = {"postgresql": "root", "redis": "default"}
STOP_TIMEOUT = 60.0
# Heroku's names for an app's only database and only redis.
ALIASES = {"postgresql": "DATABASE_URL", "redis": "REDIS_URL"}
# Spec keys that do not change what a data server runs (keys added to specs
# later count as unchanged when absent from the running one's).
NOT_DEFINITION = ("release",)


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str


def is_data(info: ServiceManifest) -> bool:
    return info.kind is Kind.DATA


def data_dir(settings: Settings, app: str, service: str) -> Path:
    return settings.paths.service_data(app, service)


def same_definition(old: ServiceManifest | None, new: ServiceManifest) -> bool:
    """Whether a running instance built from `old` can serve as `new`."""
    def definition(spec) -> dict:
        return {k: v for k, v in spec.items() if k not in NOT_DEFINITION}
    return (old is not None and definition(old.spec) == definition(new.spec)
            and old.processes == new.processes)


def prepare(settings: Settings, app: str, service: str, kind: str,
            on_host: bool = True) -> Credentials:
    """Create what the server needs in its directory, once; return how to log in.
    The server runs as the app's user, which owns the whole directory.
    Not `on_host` (a swarm node runs it): the password and the TLS files only."""
    root = data_dir(settings, app, service)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    user = appusers.for_app(settings, app)
    pw_file = root / "password"
    if not pw_file.exists():
        write_atomic(pw_file, secrets.token_urlsafe(24).encode())
    os.chmod(pw_file, 0o600)
    password = pw_file.read_text().strip()
    if not on_host:
        if kind == "postgresql":
            _tls_files(root)
        return Credentials(LOGINS[kind], password)
    if kind == "redis":
        conf = (f"bind 127.0.0.1\ndir {root}\nrequirepass {password}\nappendonly yes\n"
                "daemonize no\nsave 60 1\n")
        write_atomic(root / "redis.conf", conf.encode())
        os.chmod(root / "redis.conf", 0o600)
    else:
        if user is not None:
            filemodes.own_tree(root, user.uid, user.gid)     # initdb writes there
        if not (root / "pgdata" / "PG_VERSION").exists():
            _initdb(root, pw_file, user)
        _pg_tls(root)
    if user is not None:
        filemodes.own(root.parent, user.uid, user.gid)
        filemodes.own_tree(root, user.uid, user.gid)
    return Credentials(LOGINS[kind], password)


def _pg_tls(root: Path) -> None:
    """TLS for the cluster in root/pgdata: the certificate and key, made once,
    and the settings in root/tls.conf, which postgresql.conf includes. A
    running server takes them at its next start."""
    cert, key = _tls_files(root)
    write_atomic(root / "tls.conf", (f"ssl = on\nssl_cert_file = '{cert}'\n"
                                     f"ssl_key_file = '{key}'\n").encode())
    conf = root / "pgdata" / "postgresql.conf"
    include = f"include_if_exists = '{root / 'tls.conf'}'\n"
    text = conf.read_text()
    if include not in text:
        write_atomic(conf, (text.rstrip("\n") + "\n" + include).encode())


def _tls_files(root: Path) -> tuple[Path, Path]:
    """The certificate and key in root, made once."""
    cert, key = root / "server.crt", root / "server.key"
    if not (cert.exists() and key.exists()):
        made = selfsigned.make("127.0.0.1")
        write_atomic(key, made.key_pem)
        os.chmod(key, 0o600)        # postgres refuses a key others may read
        write_atomic(cert, made.cert_pem)
    return cert, key


def _initdb(root: Path, pw_file: Path, user=None) -> None:
    target = root / "pgdata"
    if target.exists():         # an initdb cut short: start over, it held no data yet
        shutil.rmtree(target)
    argv = [pg_bin("initdb"), "-D", str(target), "-U", LOGINS["postgresql"],
            f"--pwfile={pw_file}", "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]
    # As the app's user, who runs the server; else (postgres refuses root) as a
    # user of a user namespace.
    drop = None if user is None else privileges.preexec(user.uid, user.gid)
    try:
        out = subprocess.run(argv if user is not None else unprivileged(argv),
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=300, preexec_fn=drop, cwd=str(root))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"initdb failed: {exc}") from None
    if out.returncode != 0:
        last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DeployError(f"initdb failed (exit {out.returncode}): {last[0]}")


def connection_env(service: str, kind: str, port: int, creds: Credentials,
                   host: str = "127.0.0.1") -> dict:
    """`host`: where the server listens (a swarm node's address)."""
    prefix = f"DOTCLOUD_{service.upper()}_{kind.upper()}"
    if kind == "redis":
        url = f"redis://{creds.login}:{creds.password}@{host}:{port}"
    else:
        url = f"postgresql://{creds.login}:{creds.password}@{host}:{port}/postgres"
    return {f"{prefix}_URL": url, f"{prefix}_HOST": host, f"{prefix}_PORT": str(port),
            f"{prefix}_LOGIN": creds.login, f"{prefix}_PASSWORD": creds.password}


def client_env(service: str, kind: str, env: Mapping[str, str]) -> dict:
    """What the server's own clients read, from its connection variables in
    `env`, for `run APP SERVICE -- psql ...` or `redis-cli`: libpq's PG*
    (psql, pg_dump, any libpq app connect with no argument), redis-cli's
    REDISCLI_AUTH (it reads no host from the environment: `-u "$REDIS_URL"`)."""
    prefix = f"DOTCLOUD_{service.upper()}_{kind.upper()}"
    if f"{prefix}_HOST" not in env:
        return {}
    if kind == "redis":
        return {"REDISCLI_AUTH": env[f"{prefix}_PASSWORD"]}
    return {"PGHOST": env[f"{prefix}_HOST"], "PGPORT": env[f"{prefix}_PORT"],
            "PGUSER": env[f"{prefix}_LOGIN"], "PGPASSWORD": env[f"{prefix}_PASSWORD"],
            "PGDATABASE": "postgres"}


def heroku_aliases(services: Mapping[str, ServiceManifest], env: dict) -> dict:
    """DATABASE_URL / REDIS_URL for the manifest's `services`, when the app
    has exactly one of that type; `env` holds the connection variables."""
    out = {}
    for kind, alias in ALIASES.items():
        ours = [name for name, info in services.items() if info.type == kind]
        if len(ours) == 1:
            out[alias] = env[f"DOTCLOUD_{ours[0].upper()}_{kind.upper()}_URL"]
    return out


def born_in(inst: Instance) -> int | None:
    """The generation a data instance was created for (moves do not change it)."""
    data = inst.spec.data_service if inst.spec is not None else None
    return data.born if data is not None else None


def restore(store: Store, app: str, failed: int, active: int | None, stop_wait) -> None:
    """Undo what an unfinished deploy (generation `failed`) did to the active
    generation's data services: kept instances move back, stopped ones run again
    once the failed generation's own servers are down. `stop_wait(ids)` stops,
    waits and says whether they stopped."""
    if active is None:
        return
    ours = [i for i in store.instances(app, generation=failed) if born_in(i) is not None]
    kept = [i.id for i in ours if born_in(i) != failed]
    store.move_instances(kept, active)
    if not stop_wait([i.id for i in ours if born_in(i) == failed]):
        return      # never two servers on one data directory: leave the old ones down
    halted = [i.id for i in store.instances(app, generation=active)
              if born_in(i) is not None and i.desired == "stop"]
    store.set_desired(halted, "run")


def wait_stopped(store: Store, ids: list[int], timeout: float = STOP_TIMEOUT) -> bool:
    """Whether the instances stopped (runtime-observed) within `timeout`."""
    deadline = time.monotonic() + timeout
    while any(store.instance(i).state != "stopped" for i in ids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def answers(kind: str, port: int, host: str = "127.0.0.1") -> bool:
    """Whether the server on host:port serves clients now, by its protocol:
    postgres asks a new client to authenticate (not "starting up"), redis
    answers PING with anything but LOADING."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            if kind == "postgresql":
                params = f"user\0{LOGINS[kind]}\0database\0postgres\0\0".encode()
                s.sendall(struct.pack("!ii", 8 + len(params), 3 << 16) + params)
                head = _read(s, 5)
                # Read all of it: hanging up with unread data resets the
                # connection, which the server logs; at the password prompt it
                # logs nothing.
                _read(s, struct.unpack("!i", head[1:])[0] - 4)
                return head[:1] == b"R"
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
            return bool(reply) and not reply.startswith(b"-LOADING")
    except OSError:
        return False


def _read(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def wait_ready(store: Store, inst: Instance, kind: str, timeout: float,
               host: str = "127.0.0.1", where: str = "") -> None:
    """Wait until a new data server answers on host (see `answers`); raise
    DeployError when it exits first or `timeout` passes (`where` says more)."""
    deadline = time.monotonic() + timeout
    while not answers(kind, inst.port, host):
        now = store.instance(inst.id)
        if now.state in ("backoff", "crashed") or now.restarts >= 1:
            code = now.last_exit
            how = "no exit status" if code is None else \
                f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise DeployError(f"{inst.label} crashed at boot ({how})")
        if time.monotonic() > deadline:
            raise DeployError(f"{inst.label} not accepting connections after {timeout:g}s"
                              f"{where}")
        time.sleep(0.1)


def wait_listening(port: int, timeout: float) -> bool:
    """Whether a server accepts TCP connections on 127.0.0.1:port within
    `timeout`: running is not enough when its clients start at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
