"""`restart APP SERVICE`: restarts one service's instances in place, one at a
time, through the runtime's desired state (stop, wait, run, wait until it
answers), under the app's deploy lock.

A whole-app `restart APP` is a new generation instead (deploying.py); this
is for one service, data services included, which a new generation would
not necessarily restart. It only writes desired state; the runtime daemon
stops and starts the processes. It never touches another app's instances.

A data server (postgresql, redis) is restarted once it serves clients again,
as a deploy waits for a new one (hooks.datastores.answers: its own protocol,
not an open port): a migration run right after `restart APP db` connects.
It is asked where it runs now: this host, or under swarm the address of the
node it is pinned to, once its launcher saw its task running there.
"""
import time

from dotcloud import placement
from dotcloud.desired import Desired, InstanceState
from dotcloud.errors import DeployError, NotFound
from dotcloud.models import Instance
from hooks import datastores
from hooks.health import HttpCheck

from . import queries
from .context import CommandContext
from .deploying import app_lock

POLL = 0.1
FAILING = (InstanceState.CRASHED, InstanceState.BACKOFF)
START_TIMEOUT = 30.0
# A data server's task on its node: the swarm schedules it and the node's
# engine starts it before the server itself starts (its image is there).
SWARM_DATA_EXTRA = 60.0


def restart_service(ctx: CommandContext, app, service: str) -> list[str]:
    """Restart every active instance of service; return their labels."""
    found = queries.manifest(ctx.settings, ctx.store, app.name)
    known = found.services if found else {}
    if service not in known:
        raise NotFound(f"{app.name} has no service '{service}'"
                       + (f" (services: {', '.join(sorted(known))})" if known else ""))
    info = known[service]
    http = info.healthcheck.path if info.http else None
    data = info.type if datastores.is_data(info) else None
    # As long as a deploy gives a new one (its healthcheck timeout, 30s unless set).
    ready_in = info.healthcheck.timeout if data else START_TIMEOUT
    if data and ctx.settings.runtime == "swarm":
        ready_in += SWARM_DATA_EXTRA
    done = []
    with app_lock(ctx, app.name):
        current = ctx.store.app(app.name)
        instances = [li.instance for li in queries.live_instances(ctx.store, current)
                     if li.role == "active" and li.instance.service == service]
        if not instances:
            raise NotFound(f"service '{service}' of {app.name} has no instance to restart")
        for inst in sorted(instances, key=lambda i: i.number):
            _restart_one(ctx, app.name, inst, http, data, ready_in)
            done.append(inst.label)
    return done


def _restart_one(ctx: CommandContext, app: str, inst: Instance, http: str | None,
                 data: str | None = None, ready_in: float = START_TIMEOUT) -> None:
    """http: the health path of an HTTP service, None for a worker; data: the
    type of a data service; ready_in: how long it may take to serve again."""
    ctx.progress(f"[{inst.label}] Stopping...")
    ctx.store.set_desired([inst.id], Desired.STOP)
    queries.poke_runtime(ctx.settings)
    stop_by = time.monotonic() + ctx.settings.stop_grace + 10
    _wait(ctx, inst, lambda i: i.state == InstanceState.STOPPED, stop_by, "did not stop")
    ctx.progress(f"[{inst.label}] Starting...")
    ctx.store.set_desired([inst.id], Desired.RUN)
    queries.poke_runtime(ctx.settings)
    t0 = time.monotonic()
    start_by = t0 + ready_in
    _wait(ctx, inst, lambda i: i.state == InstanceState.RUNNING and i.pid is not None, start_by,
          "did not start")
    if data is not None:
        ctx.progress(f"[{inst.label}] Waiting for the server to accept connections...")
        _wait(ctx, inst, _serves(ctx, data), start_by,
              lambda now: f"not accepting connections {ready_in:g}s after the restart"
                          f"{_where(ctx, now)}")
        ctx.progress(f"[{inst.label}] Accepting connections ({time.monotonic() - t0:.1f}s)")
    if http is not None:
        host = f"{app}.{ctx.settings.domain}" if inst.service == "www" else \
            f"{inst.service}.{app}.{ctx.settings.domain}"
        _wait(ctx, inst, _answers(ctx, inst.label, http, host), start_by, "is not responsive")
    ctx.progress(f"[{inst.label}] Restarted")


def _wait(ctx: CommandContext, inst: Instance, done, deadline: float, failure: str) -> None:
    while True:
        current = ctx.store.instance(inst.id)
        if current is None:
            raise DeployError(f"{inst.label} disappeared during the restart")
        if done(current):
            return
        if current.state in FAILING and current.desired == Desired.RUN:
            raise DeployError(f"{inst.label} crashed after the restart "
                              f"(last exit {current.last_exit}); see: logs {inst.app} "
                              f"{inst.label}")
        if time.monotonic() > deadline:
            raise DeployError(f"{inst.label} {failure(current) if callable(failure) else failure}"
                              + ("" if callable(failure) else " in time"))
        time.sleep(POLL)


def _answers(ctx: CommandContext, label: str, path: str, host: str):
    """A check for _wait, as a deploy's health check: any HTTP answer below 500
    counts, and the connection cut, or 5xx, check after check, fails. It asks
    where the instance runs now (a swarm task on another node listens there,
    not on this host's 127.0.0.1), as the deploy's check does."""
    checks = HttpCheck(path, host)

    def answers(inst: Instance) -> bool:
        ready = checks.check(inst.port, placement.address(ctx.settings.data, inst.spec))
        failure = checks.failure()
        if not ready and failure:
            raise DeployError(f"{label} {failure}")
        return ready
    return answers


def _serves(ctx: CommandContext, kind: str):
    """A check for _wait: the data server answers its protocol where it runs
    now (no address: its task is placed nowhere yet)."""
    def serves(inst: Instance) -> bool:
        if inst.state != InstanceState.RUNNING:
            return False
        addr = placement.address(ctx.settings.data, inst.spec)
        return addr is not None and datastores.answers(kind, inst.port, addr)
    return serves


def _where(ctx: CommandContext, inst: Instance) -> str:
    """Where a data server that is not serving runs, and where to look."""
    placed = placement.of(ctx.settings.data, inst.spec)
    at = "" if placed is None else \
        f" on node {placed.node or '?'} ({placed.addr or 'not placed'})"
    return f"{at} (port {inst.port}); see: logs {inst.app} {inst.label}"
