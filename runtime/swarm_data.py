"""Data services (postgresql, redis) under the swarm runtime: each instance a
swarm task pinned to one node, its directory a docker volume on that node.

A data service's node is chosen once, when it first runs: the ready, active
node with the fewest of the platform's tasks among those that have the
labels of its `placement:` (without a registry, managers only: no other
node could pull the data image). Its id is recorded in
DATA/services/APP/SERVICE/node, beside the password, and every later
instance of the service is constrained to it (`node.id==ID`), across pushes
with changed definitions, restarts and node losses: the data never moves. A
service whose node is down waits for it.

The directory is a local named volume of that node,
`dc-<data id>-APP-SERVICE-<random>`, named once with the node (in
DATA/services/APP/SERVICE/volume) and mounted at /data: an app destroyed
and made again under the same name starts with a new volume, never with
the old one's data and its other password. The task's command (SCRIPT)
makes the server's files there on its first start (postgres's cluster,
made by initdb with the password; redis's append-only files, its config
written at each start in the task's tmpfs home), as the app's uid, from the
data image (settings docker_data_image: postgresql, redis-server and
nss_wrapper, of which tests/docker/images.sh builds one). The server listens on the node's
every address, with its password (and postgres with TLS as well). The
password, and postgres's certificate and key, are made once on the manager
(hooks.datastores) and handed to the task in its environment.

This module never removes a volume: the data lives on until an operator
removes it (`docker volume rm` on its node).
"""
from __future__ import annotations

import re
import secrets
from pathlib import Path

from dotcloud.desired import InstanceSpec
from runtime import docker_engine, swarm

VOLUME_TARGET = "/data"
NODE_FILE = "node"
VOLUME_FILE = "volume"
UNSAFE_RE = re.compile(r"[^a-zA-Z0-9_.-]+")
# Environment of the task only (not the app's): the secrets the script needs.
PASSWORD_ENV = "DOTCLOUD_DATA_PASSWORD"
CERT_ENV = "DOTCLOUD_DATA_TLS_CERT"
KEY_ENV = "DOTCLOUD_DATA_TLS_KEY"

# $1: the type, $2: the port. initdb and postgres insist on a passwd entry
# for their uid, which the image lacks: nss_wrapper gives them one. The
# files stay the app's, 0700 (the volume's root is writable by any uid).
SCRIPT = r'''set -eu
umask 077
kind=$1 port=$2 me=$(id -u) home=${HOME:-/tmp}
if [ "$kind" = redis ]; then
  mkdir -p /data/redis
  printf 'bind 0.0.0.0\nprotected-mode no\nport %s\ndir /data/redis\nrequirepass %s\nappendonly yes\ndaemonize no\nsave 60 1\n' \
    "$port" "$DOTCLOUD_DATA_PASSWORD" > "$home/redis.conf"
  unset DOTCLOUD_DATA_PASSWORD
  exec redis-server "$home/redis.conf"
fi
printf 'dotcloud:x:%s:%s:dotcloud:%s:/bin/sh\n' "$me" "$(id -g)" "$home" > "$home/passwd"
printf 'dotcloud:x:%s:\n' "$(id -g)" > "$home/group"
export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD="$home/passwd" NSS_WRAPPER_GROUP="$home/group"
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
if [ ! -s /data/pgdata/PG_VERSION ]; then
  rm -rf /data/pgdata     # an initdb cut short: it held no data yet
  printf '%s' "$DOTCLOUD_DATA_PASSWORD" > "$home/pw"
  "$bin/initdb" -D /data/pgdata -U root --pwfile="$home/pw" -A scram-sha-256 -E UTF8 \
    --locale=C.UTF-8 >/dev/null
  rm -f "$home/pw"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
    >> /data/pgdata/pg_hba.conf
  echo "[dotcloud] initialised a new cluster in /data/pgdata"
fi
printf '%s\n' "$DOTCLOUD_DATA_TLS_CERT" > /data/server.crt
printf '%s\n' "$DOTCLOUD_DATA_TLS_KEY" > /data/server.key
unset DOTCLOUD_DATA_PASSWORD DOTCLOUD_DATA_TLS_CERT DOTCLOUD_DATA_TLS_KEY
exec "$bin/postgres" -D /data/pgdata -h '*' -p "$port" -c unix_socket_directories= \
  -c ssl=on -c ssl_cert_file=/data/server.crt -c ssl_key_file=/data/server.key
'''


def volume_name(settings, app: str, service: str) -> str:
    """`dc-<data id>-APP-SERVICE-<random>`: the service's volume on its node,
    named on first use."""
    path = settings.paths.service_data(app, service) / VOLUME_FILE
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        name = ""
    if not name:
        name = f"dc-{docker_engine.data_id(settings.data)}-{UNSAFE_RE.sub('_', app)}-" \
               f"{UNSAFE_RE.sub('_', service)}-{secrets.token_hex(4)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n")
    return name


def node_file(settings, app: str, service: str) -> Path:
    return settings.paths.service_data(app, service) / NODE_FILE


def recorded_node(settings, app: str, service: str) -> str | None:
    try:
        return node_file(settings, app, service).read_text().strip() or None
    except FileNotFoundError:
        return None


def pin(settings, client, app: str, service: str, labels: dict) -> swarm.Node:
    """The node the data service runs on: the recorded one, else one chosen
    now (and recorded). Raises SwarmError (one line) when its recorded node
    left the swarm or lacks the labels now asked for, or no node may take it."""
    nodes = swarm.nodes(client)
    wanted = {str(k): str(v) for k, v in (labels or {}).items()}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    recorded = recorded_node(settings, app, service)
    if recorded is not None:
        node = next((n for n in nodes if n.id == recorded), None)
        if node is None:
            raise swarm.SwarmError(
                f"service '{service}': its node {recorded[:12]}, which holds its data (volume "
                f"{volume_name(settings, app, service)}), is no longer in the swarm")
        if any(node.labels.get(k) != v for k, v in wanted.items()):
            raise swarm.SwarmError(
                f"service '{service}': its data is on node {node.hostname}, which lacks the "
                f"placement labels {shown}: label it, or leave the placement as it was")
        return node
    fit = [n for n in nodes if n.state == "ready" and n.availability == "active"
           and all(n.labels.get(k) == v for k, v in wanted.items())
           and (settings.registry or n.role == "manager")]
    if not fit:
        where = f"with the labels {shown}" if wanted else "that is ready and active"
        raise swarm.SwarmError(f"service '{service}': no node of the swarm {where} can hold "
                               "its data")
    load = swarm.placements(client, settings.data)
    node = min(fit, key=lambda n: (len(load.get(n.hostname, [])), n.hostname))
    path = node_file(settings, app, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / VOLUME_FILE).unlink(missing_ok=True)     # a new node: a new volume
    volume_name(settings, app, service)
    path.write_text(node.id + "\n")
    return node


def check_replaceable(service: str, node: swarm.Node) -> None:
    """A data server is replaced (a changed definition) only while its node is
    ready: the old task on a node that is down cannot report its end, and may
    still run on the volume when the node comes back with the next one."""
    if node.state != "ready":
        raise swarm.SwarmError(
            f"service '{service}': its node {node.hostname}, which holds its data, is "
            f"{node.state}: its server cannot be replaced now; push again when the node is "
            "back")


def processes(settings, spec: InstanceSpec, env: dict, secrets: dict) -> dict:
    """The instance's one process, as the data image's shell runs it on its node."""
    kind = spec.data_service.type
    name = spec.processes[0].name if spec.processes else kind
    return {name: {"argv": ["/bin/sh", "-c", SCRIPT, "dotcloud-data", kind, str(spec.port)],
                   "cwd": VOLUME_TARGET, "env": {**env, **secrets}}}


def secrets_of(data_dir: Path) -> dict:
    """The task's secrets, from the service's directory on the manager."""
    out = {PASSWORD_ENV: (data_dir / "password").read_text().strip()}
    cert, key = data_dir / "server.crt", data_dir / "server.key"
    if cert.exists() and key.exists():
        out[CERT_ENV] = cert.read_text().strip()
        out[KEY_ENV] = key.read_text().strip()
    return out


def wrap(settings, spec: InstanceSpec, env: dict, reasons: Path | None = None) -> dict:
    """What the shim runs for a data instance: the swarm launcher, with the
    data image, the volume, the node and the app's uid (`reasons`: see
    swarm_launcher.wrap)."""
    from runtime import swarm_launcher
    kind = spec.data_service.type
    procs = processes(settings, spec, env,
                      secrets_of(settings.paths.service_data(spec.app, spec.service)))
    return swarm_launcher.wrap(
        settings, app=spec.app, service=spec.service, instance=spec.instance_name,
        processes=procs, image=settings.docker_data_image, user=spec.user,
        constraints=dict(spec.placement), limits=spec.limits, node=spec.node,
        volume=f"{volume_name(settings, spec.app, spec.service)}:{VOLUME_TARGET}",
        # postgres takes SIGTERM as a smart shutdown that waits for every client.
        stop_signal="SIGINT" if kind == "postgresql" else None, reasons=reasons)


def volumes(client, data: Path) -> list:
    """The data volumes of this data directory on the engine `client` (a node's)."""
    return client.volumes.list(filters={"label": f"{docker_engine.LABEL_DATA}="
                                                 f"{docker_engine.data_id(data)}"})
