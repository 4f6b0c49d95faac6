"""Deploys a built release as a new generation of the whole stack.

New data servers start first and are waited for until they serve; then the
new app instances are created beside the old ones (own ports), each runs
postinstall, each service with a release command runs it once, and only
then do the app instances launch and get health-checked; only when every
one answers does the router switch, in one table swap. The old generation
is then drained and stopped. A generation that never answers is torn down
and the old one keeps serving.
This module writes desired state; the runtime daemon starts and stops
processes, the router routes.
"""
import json
import random
import re
import socket
import time
from pathlib import Path
from typing import Mapping

import yaml

from buildpacks import run_postinstall
from buildpacks.base import DEFAULT_PATH
from dotcloud import appusers, filemodes, placement, routes
from dotcloud.control import ControlUnavailable, request
from dotcloud.desired import (DataService, Desired, InstanceSpec, Manifest, ProcessSpec,
                              ServiceManifest)
from dotcloud.dyno import with_dyno
from dotcloud.errors import DeployError
from dotcloud.fsutil import write_atomic, write_json
from dotcloud.models import Generation, Instance, Release
from dotcloud.settings import Settings
from dotcloud.state import Store
from runtime import shimctl, shimlog
from runtime.executor import executor_for

from . import datastores, release_phase
from .build import release_dir
from .health import Check, wait_responsive
from .progress import Progress

# Instances are polled at least this often, whatever the healthcheck interval says,
# so a push goes live as soon as its instances answer.
POLL = 0.1
# What the failure's excerpt reads of the end of a log: an instance of the
# serving release writes its requests to the same file, a few seconds of
# them under load come after the failed instance's traceback.
EXCERPT_BYTES = 1 << 20
ERROR_RE = re.compile(r"Error|Exception|error:|ERR!|Traceback|not found|denied")
# A data server's first start on a swarm node also pushes and pulls the data image.
SWARM_DATA_EXTRA = 120.0


def deploy(settings: Settings, store: Store, app: str, release: Release,
           progress: Progress) -> None:
    rev = release.revision[:7]
    manifest = Manifest.load(release_dir(settings, app, release.build) / Manifest.FILE)
    if manifest is None:
        raise DeployError(f"release v{release.number} has no build left (only the last "
                          f"{settings.keep_releases} are kept); push again")
    for stale in store.generations(app, ("starting",)):
        teardown(settings, store, stale)      # left behind by a deployer that died
    config = json.loads(release.config)
    variables = config.get("variables", {})
    gen = store.new_generation(app, release.id)
    t0 = time.monotonic()
    progress.step("Initializing new services... (This may take a few minutes)")
    scales = store.scales(app)
    created: list[tuple[Instance, ServiceManifest]] = []
    # Those whose logs may tell why a deploy failed.
    launched: list[tuple[Instance, ServiceManifest]] = []
    build_dir = release_dir(settings, app, release.build)
    try:
        data_env, data_ports, data_nodes = _data_services(settings, store, app, gen, manifest,
                                                          progress)

        def initialize(service, info, count, port=None):
            for number in range(count):
                label = f"{service}.{number}"
                progress.line(f"[{label}] Initializing...")
                node = data_nodes.get(service)
                inst = _create_instance(settings, store, app, gen, service, number, info,
                                        variables, data_env, port, release.build,
                                        node=node.id if node is not None else None)
                created.append((inst, info))
                progress.line(f"[{label}] Service initialized")

        # Data services first: postinstall and release commands talk to them.
        for service, info in manifest.services.items():
            if datastores.is_data(info) and data_ports[service] is not None:
                progress.step(f"Using single-instance scaling for service {service} "
                              "(1 instance(s)).")
                initialize(service, info, 1, data_ports[service])
        if created:
            launched = list(created)
            _start_data(settings, store, app, launched, progress, data_nodes)
            launched = []       # they serve: what fails next is not theirs to explain
            t0 = progress.mark("data", t0)
        for service, info in manifest.services.items():
            if not datastores.is_data(info):
                count = scales.get(service, info.instances)
                how = "scaling" if service in scales else "default scaling"
                progress.step(f"Using {how} for service {service} ({count} instance(s)).")
                initialize(service, info, count)
        apps = [(inst, info) for inst, info in created if not datastores.is_data(info)]
        progress.step("All services have been initialized. Deploying code...")
        for inst, info in apps:
            env = dict(inst.spec.env)
            progress.line(f"[{inst.label}] Deploying build revision {rev}...")
            log = progress.service(inst.label)
            if (Path(info.src) / "postinstall").exists():
                log("Running postinstall script...")
                # Under the docker runtime: in a container of the service's base image.
                with executor_for(settings, app, inst.label, info.type, build_dir,
                                  purpose="postinstall", home=Path(inst.spec.home),
                                  error=DeployError,
                                  limits=info.limits.over(settings.default_limits)) as executor:
                    run_postinstall(Path(info.src), env, log, timeout=release_phase.TIMEOUT,
                                    executor=executor)
        t0 = progress.mark("install", t0)
        # Once per service, not per instance, before any new instance runs.
        for service, info in manifest.services.items():
            if release_phase.command_of(info) is not None:
                home = release_phase.home_for(settings, app, gen.id, service)
                env = with_dyno(instance_env(settings, app, service, 0, None, info,
                                             variables, home, data_env), "release.1")
                release_phase.run(settings, app, service, info, build_dir, home, env, progress)
                t0 = progress.mark("release", t0)
        for inst, _ in apps:
            progress.line(f"[{inst.label}] Launching...")
        launched = apps
        store.set_desired([i.id for i, _ in apps], Desired.RUN)
        poke_runtime(settings, progress)
        t0 = progress.mark("start", t0)
        for inst, _ in apps:
            progress.line(f"[{inst.label}] Waiting for the instance to become responsive...")
        wait_responsive(store, [_check(settings, app, inst, info) for inst, info in apps],
                        data=settings.data)
        t0 = progress.mark("health", t0)
    except BaseException as exc:
        # Whatever stopped us, the new generation must not linger half-started.
        teardown(settings, store, gen)
        if isinstance(exc, DeployError):
            # Instances that never ran have no log of their own to show.
            _show_failure(settings, app, launched, progress)
        raise
    for inst, _ in apps:        # a data server takes no traffic from the router
        progress.line(f"[{inst.label}] Re-routing traffic to the new build...")
    previous = store.activate(app, gen.id)
    routes.publish(settings, store)
    t0 = progress.mark("switch", t0)
    for inst, _ in created:
        progress.line(f"[{inst.label}] Successfully deployed build revision {rev}")
    if previous is not None:
        retire(settings, store, store.generation(previous))
    progress.mark("drain", t0)
    progress.step("Deploy finished")


def _start_data(settings: Settings, store: Store, app: str, started: list, progress,
                nodes: dict | None = None) -> None:
    """Start new data servers and wait until each answers its protocol: the
    app's postinstall and release command connect to them next. `nodes`:
    service -> the swarm node it is pinned to."""
    for inst, _ in started:
        progress.line(f"[{inst.label}] Launching...")
    store.set_desired([i.id for i, _ in started], Desired.RUN)
    poke_runtime(settings, progress)
    for inst, info in started:
        progress.line(f"[{inst.label}] Waiting for the server to accept connections...")
        timeout = _check(settings, app, inst, info).timeout
        node = (nodes or {}).get(inst.service)
        if node is None:
            datastores.wait_ready(store, inst, info.type, timeout)
        else:
            where = f" on node {node.hostname} ({node.addr}), where its data is"
            if node.state != "ready":
                where += f", which is {node.state}: the service waits for it there"
            datastores.wait_ready(store, inst, info.type, timeout + SWARM_DATA_EXTRA,
                                  host=node.addr, where=where)
        progress.line(f"[{inst.label}] Accepting connections")


def retire(settings: Settings, store: Store, gen: Generation) -> None:
    """Drain an old generation (in-flight requests finish), then stop it."""
    olds = store.instances(gen.app, generation=gen.id)
    routes.drain(settings, [(placement.address(settings.data, i.spec) or placement.LOCAL, i.port)
                            for i in olds], settings.drain_timeout)
    store.set_desired([i.id for i in olds], Desired.STOP)
    store.set_generation_state(gen.id, "retired")
    poke_runtime(settings, None)


def teardown(settings: Settings, store: Store, gen: Generation) -> None:
    owner = store.app(gen.app)
    if owner is not None and owner.generation != gen.id:
        datastores.restore(store, gen.app, gen.id, owner.generation,
                           lambda ids: _stop_and_wait(settings, store, ids))
    store.set_desired([i.id for i in store.instances(gen.app, generation=gen.id)], Desired.STOP)
    store.set_generation_state(gen.id, "failed")
    poke_runtime(settings, None)


def poke_runtime(settings: Settings, progress: Progress | None) -> None:
    try:
        request(settings.paths.socket("runtime"), {"op": "reconcile"}, timeout=30)
    except ControlUnavailable:
        if progress:
            progress.line("warning: the runtime daemon is not answering; instances start "
                          "when it is back")


def instance_env(settings: Settings, app: str, service: str, number: int, port: int | None,
                 info: ServiceManifest, variables: dict, home: Path,
                 data_env: dict | None = None) -> dict:
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8",     # the build's env adds its bin dirs
           "HOME": str(home), "TMPDIR": str(home)}     # temporary files private too
    env.update(info.env)
    env.update(info.environment)
    env.update(DOTCLOUD_PROJECT=app, DOTCLOUD_SERVICE_NAME=service,
               DOTCLOUD_SERVICE_ID=str(number), DOTCLOUD_ENVIRONMENT="default")
    if port is not None:
        env["PORT"] = str(port)
        env["PORT_WWW" if service == "www" else f"PORT_{service.upper()}"] = str(port)
    # DATABASE_URL and REDIS_URL never override the build file's variables
    # (nor the app's, which win over everything).
    env.update({k: v for k, v in (data_env or {}).items()
                if k not in info.environment})
    env.update(variables)
    return env


def _create_instance(settings, store, app, gen, service, number, info: ServiceManifest,
                     variables, data_env, port=None, build: int | None = None,
                     node: str | None = None):
    home = settings.paths.home(app, gen.id, service, number)
    home.mkdir(parents=True, exist_ok=True)
    data = datastores.is_data(info)
    # Its own uid: the shim drops to it, or a container runs as it (docker's flags).
    user = appusers.for_app(settings, app)
    if user is not None:
        filemodes.own(home.parent, user.uid, user.gid)
        filemodes.own(home, user.uid, user.gid)
        # Its releases, those built before it had a user too (a rollback runs one).
        filemodes.group(settings.paths.releases(app), user.gid)
    datadir = str(datastores.data_dir(settings, app, service))
    with store.tx():
        if port is None:
            port = _free_port(settings, store.ports_in_use())
        env = instance_env(settings, app, service, number, port if info.http else None,
                           info, variables, home, data_env)

        def fill(arg: str) -> str:
            arg = arg.replace("{port}", str(port))
            return arg.replace("{datadir}", datadir) if data else arg
        processes = [ProcessSpec(name, [fill(a) for a in argv], info.src)
                     for name, argv in info.processes.items()]
        # How it runs (a process, a container, a swarm task) is the runtime's choice.
        spec = InstanceSpec(
            app=app, service=service, number=number, generation=gen.id, port=port,
            service_type=info.type, processes=processes, env=env, home=str(home),
            log=settings.paths.log_name(app, f"{service}.{number}"),
            release_dir=str(settings.paths.release(app, build)) if build is not None else None,
            data_service=DataService(info.type, gen.id) if data else None,
            user=(user.uid, user.gid) if user is not None else None,
            image=info.image, placement=dict(info.spec.get("placement") or {}), node=node,
            limits=info.limits.over(settings.default_limits))
        inst = store.add_instance(app, gen.id, service, number, port, spec)
    write_json(home / "environment.json", env)
    write_atomic(home / "environment.yml", yaml.safe_dump(env, default_flow_style=False).encode())
    return inst


def _data_services(settings, store, app, gen, manifest, progress) -> tuple[dict, dict]:
    """Ready every data service: keep (move into `gen`) a running instance whose
    definition is unchanged, else stop it first and pick a port for a new one.
    Returns the connection variables of them all (with DATABASE_URL and
    REDIS_URL when there is one of the kind), service -> new port
    (None: kept), and under swarm service -> the node it is pinned to."""
    active = store.app(app).generation
    olds = store.instances(app, generation=active) if active is not None else []
    before = _active_services(settings, store, app)
    env, ports, nodes = {}, {}, {}
    for service, info in manifest.services.items():
        if not datastores.is_data(info):
            continue
        kind = info.type
        host = "127.0.0.1"
        if settings.runtime == "swarm":
            node = nodes[service] = _data_node(settings, app, service, info)
            host = node.addr
            if node.state != "ready":
                progress.line(f"[{service}.0] Its node {node.hostname} is {node.state}: the "
                              "service waits for it there, where its data is")
        creds = datastores.prepare(settings, app, service, kind,
                                   on_host=settings.runtime != "swarm")
        running = [i for i in olds if i.service == service and i.desired == Desired.RUN]
        if running and datastores.same_definition(before.get(service), info):
            store.move_instances([i.id for i in running], gen.id)
            progress.line(f"[{service}.0] Definition unchanged: kept running, not restarted")
            port, ports[service] = running[0].port, None
        else:
            if running and service in nodes:
                from runtime import swarm, swarm_data
                try:
                    swarm_data.check_replaceable(service, nodes[service])
                except swarm.SwarmError as e:
                    raise DeployError(str(e)) from None
            if running:
                progress.line(f"[{service}.0] Definition changed: stopping the old instance "
                              "first (brief interruption)")
                if not _stop_and_wait(settings, store, [i.id for i in running]):
                    raise DeployError(f"{service}.0: the old instance did not stop in "
                                      f"{datastores.STOP_TIMEOUT:g}s")
            used = store.ports_in_use() | {p for p in ports.values() if p}
            # The stopped server's port, when still free, keeps its URL valid.
            if running and running[0].port not in used and _bindable(running[0].port, reuse=True):
                port = ports[service] = running[0].port
            else:
                port = ports[service] = _free_port(settings, used)
        env.update(datastores.connection_env(service, kind, port, creds, host))
    env.update(datastores.heroku_aliases(manifest.services, env))
    return env, ports, nodes


def _data_node(settings: Settings, app: str, service: str, info: ServiceManifest):
    """The swarm node a data service is pinned to (runtime.swarm_data)."""
    from runtime import docker_engine, swarm_data     # the docker SDK: only under swarm
    try:
        client = docker_engine.connect()
        try:
            return swarm_data.pin(settings, client, app, service,
                                  dict(info.spec.get("placement") or {}))
        finally:
            client.close()
    except (docker_engine.EngineError, *docker_engine.ENGINE_ERRORS) as e:
        raise DeployError(str(e) if isinstance(e, docker_engine.EngineError)
                          else docker_engine.short(e)) from None


def _active_services(settings: Settings, store: Store, app: str) -> Mapping[str, ServiceManifest]:
    active = store.active_release(app)
    manifest = Manifest.load(release_dir(settings, app, active.build) / Manifest.FILE) \
        if active is not None else None
    return manifest.services if manifest else {}


def _stop_and_wait(settings: Settings, store: Store, ids: list[int]) -> bool:
    store.set_desired(ids, Desired.STOP)
    poke_runtime(settings, None)
    return datastores.wait_stopped(store, ids)


def _free_port(settings: Settings, used: set[int]) -> int:
    low, high = settings.port_range
    for _ in range(200):
        port = random.randint(low, high)
        if port in used:
            continue
        if _bindable(port):
            return port
    raise DeployError("no free port left in the instance port range")


def _bindable(port: int, reuse: bool = False) -> bool:
    with socket.socket() as s:
        # Like the servers themselves, which set SO_REUSEADDR: connections
        # of a stopped server left in TIME_WAIT do not hold its port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse))
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _check(settings: Settings, app: str, inst: Instance, info: ServiceManifest) -> Check:
    hc = info.healthcheck
    host = f"{app}.{settings.domain}" if inst.service == "www" else \
        f"{inst.service}.{app}.{settings.domain}"
    return Check(inst.id, inst.label, info.http, hc.path, host, hc.timeout,
                 min(hc.interval, POLL), settings.paths.instance(inst.id).status)


def _show_failure(settings: Settings, app: str, created, progress: Progress) -> None:
    shown = set()
    for inst, _ in created:
        path = settings.paths.log(app, inst.label)
        if inst.label in shown or not path.exists():
            continue
        shown.add(inst.label)
        # The file is the label's, shared by every generation: records stamped
        # before this instance was created are earlier instances' (wall clock,
        # as the shim stamps them; an old instance still serving during these
        # seconds writes there too, which no stamp tells apart).
        lines = last_run_excerpt(_tail(path, EXCERPT_BYTES).decode("utf-8", "replace"),
                                 since=inst.updated, own=_own_lines(settings, inst))
        if lines:
            progress.line(f"[{inst.label}] Last lines of its log:")
            for line in lines:
                progress.line(f"[{inst.label}]   {line}")


def _tail(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            return f.read()
    except OSError:
        return b""          # rotated away this instant: nothing to show


def _own_lines(settings: Settings, inst: Instance) -> set[str] | None:
    """The instance's last output lines as its shim keeps them (`web: line`),
    or None when its status cannot be read."""
    status = shimctl.read_status(settings.paths.instance(inst.id).status)
    if status is None:
        return None
    return {f"{name}: {line}" for name, proc in (status.get("processes") or {}).items()
            for line in (proc or {}).get("last_lines") or ()}


def last_run_excerpt(text: str, limit: int = 12, since: float | None = None,
                     own: set[str] | None = None) -> list[str]:
    """The telling lines of the last run in an instance log: its error lines
    (servers print pages of shutdown noise after the one line that matters),
    then how it ended. `since`: records stamped earlier are left out. `own`:
    the instance's own last lines; the tail is made of those and of the
    runtime's events, not of an older instance's lines in the same file."""
    first = shimlog.timestamp(since) if since is not None else ""
    lines = [l.split(" ", 1)[1] if l[:4].isdigit() and " " in l else l
             for l in text.splitlines() if not first or l.split(" ", 1)[0] >= first]
    starts = [i for i, l in enumerate(lines) if "[dotcloud] started" in l]
    # Records since the instance was made are all its own, and each of its
    # runs counts: the runtime may restart it once before the deploy gives up,
    # and that last run has nothing to tell but being stopped.
    run = lines if first else lines[starts[-1] + 1:] if starts else lines
    errors = [l for l in run if ERROR_RE.search(l) and "[dotcloud]" not in l]
    picked = list(dict.fromkeys(errors))[-limit:]
    ended = run if own is None else [l for l in run if l in own or "[dotcloud]" in l]
    tail = [l for l in ended[-3:] if l not in picked]
    return picked + tail
