"""`status APP`: every live instance with its state, shim pid (and container
names under the docker runtime), port, uptime, restarts and last exit; for
an instance that crashes or restarts, its last log lines, so a crash loop
explains itself.

Read-only: it reads the store, the shims' status files and the logs.
"""
import time

from dotcloud import placement
from dotcloud.desired import InstanceState
from dotcloud.resources import format_memory

from . import queries
from .context import Args, Command, CommandContext
from .logfiles import tail_file
from .output import duration, iso, table

TROUBLED = (InstanceState.CRASHED, InstanceState.BACKOFF)
# States whose processes have a start time worth an uptime.
UP = (InstanceState.RUNNING, InstanceState.STARTING, *TROUBLED)
LAST_LINES = 10


def status(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    now = time.time()
    rows = []
    for live in queries.live_instances(ctx.store, app):
        inst = live.instance
        shim = queries.instance_status(ctx.settings, inst)
        containers = container_names(ctx.settings, inst)
        running = inst.state in UP and inst.started
        row = {
            "service": inst.service, "number": inst.number, "instance": inst.label,
            "id": inst.id, "generation": inst.generation, "role": live.role,
            "state": inst.state, "desired": inst.desired, "pid": inst.pid, "port": inst.port,
            "started": iso(inst.started) if running else None,
            "uptime_seconds": round(now - inst.started, 1) if running else None,
            "restarts": inst.restarts, "last_exit": inst.last_exit,
            # The last exit in words ("out of memory (limit 512M)"), and the
            # limits its cgroup enforces (runtime.cgroups).
            "last_exit_reason": _exit_reason(shim),
            "limits": _limits(inst, shim), "oom_kills": shim.get("oom_kills", 0),
            # Under the swarm runtime: its node (None: being placed); else None.
            "node": _node(ctx.settings, inst),
            "processes": {name: dict({k: p.get(k) for k in ("pid", "state", "restarts",
                                                            "last_exit", "last_exit_reason")},
                                     container=containers.get(name))
                          for name, p in shim.get("processes", {}).items()},
            "last_lines": [],
        }
        if inst.state in TROUBLED or inst.restarts:
            path = queries.log_path(ctx.settings, app.name, inst.label)
            row["last_lines"] = tail_file(path, LAST_LINES)
        rows.append(row)
    if args.json:
        ctx.emit({"name": app.name, "instances": rows})
        return 0
    if not rows:
        ctx.say(f"{app.name} has no instances (nothing deployed yet?)")
        return 0
    docker = any(p["container"] for r in rows for p in r["processes"].values())
    swarm = any(r["node"] for r in rows)
    ctx.out(table(["INSTANCE", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "LAST EXIT", "ROLE"]
                  + (["CONTAINERS"] if docker else []) + (["NODE"] if swarm else []),
                  [[r["instance"], r["state"], r["pid"], r["port"],
                    duration(r["uptime_seconds"]), r["restarts"], _last_exit(r), r["role"]]
                   + ([",".join(p["container"] or "-" for p in r["processes"].values())]
                      if docker else [])
                   + ([r["node"] or "-"] if swarm else [])
                   for r in rows]))
    for r in rows:
        if r["state"] in TROUBLED:
            ctx.say("")
            ctx.say(f"{r['instance']} is {r['state']}: last exit {_last_exit(r, 'status ')}, "
                    f"{r['restarts']} restart(s); last lines of its log:")
            for line in r["last_lines"]:
                ctx.say(f"  {line}")
    # A worker the kernel killed (gunicorn starts another) leaves no exit to show.
    for r in rows:
        memory = (r["limits"] or {}).get("memory_bytes")
        if r["oom_kills"] and memory:
            ctx.say(f"{r['instance']}: {r['oom_kills']} process(es) killed for memory "
                    f"(limit {format_memory(memory)})")
    return 0


def container_names(settings, inst) -> dict[str, str]:
    """process -> container name, for instances of the docker runtime."""
    if settings.runtime != "docker":
        return {}
    # Only here: the docker SDK it loads has no business in the SSH daemon otherwise.
    from runtime.docker_launcher import container_names as of_spec
    return of_spec(settings, inst.spec)


def _exit_reason(shim: dict) -> str | None:
    """How the process that exited last ended, as the shim put it."""
    exits = [(p.get("last_exit_at") or 0, p.get("last_exit_reason") or "")
             for p in (shim.get("processes") or {}).values()
             if isinstance(p, dict) and p.get("last_exit") is not None]
    return max(exits)[1] or None if exits else None


def _last_exit(row: dict, prefix: str = ""):
    """What a person reads: the exit status, or why the kernel killed it."""
    reason = row["last_exit_reason"] or ""
    if reason.startswith("out of memory"):
        return reason
    return row["last_exit"] if not prefix else f"{prefix}{row['last_exit']}"


def _limits(inst, shim: dict) -> dict | None:
    """What its cgroup enforces (the shim's word), else what its spec asks."""
    if isinstance(shim.get("limits"), dict):
        return shim["limits"]
    limits = getattr(inst.spec, "limits", None)
    return limits.to_dict() if limits is not None else None


COMMANDS = (
    Command("status", status, "APP",
            "every instance: state, pid, port, uptime, restarts, last exit", 1, 1),
)


def _node(settings, inst) -> str | None:
    placed = placement.of(settings.data, inst.spec)
    return placed.node if placed is not None else None
