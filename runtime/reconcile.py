"""Closes the gap between the instances the store wants and the shims that run.

One pass of reconcile(): every instance that should run has a live shim
(started if missing, e.g. after a crash of the shim or of the host); every
instance that should stop gets SIGTERM, then SIGKILL after the grace period;
what the shims report (state, restarts, last exit) goes back to the store.
Everything it knows can be read back from the store and the shims' files,
so killing the daemon loses nothing: a restarted daemon adopts the shims it
finds through their pid files.

A shim that was killed is replaced at once, after what it left running
(gunicorn's workers, holding the instance's port) is stopped; one that dies
again soon, or never even reported (a bad spec, a broken interpreter), is
started again with backoff and reported `backoff`, then `crashed`. One
instance's trouble never stops the pass for the others. It must never start
a second shim for an instance whose shim is alive.
"""
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dotcloud import logs
from dotcloud.fsutil import read_json, write_atomic, write_json
from dotcloud.desired import InstanceSpec, Kind, SpecError
from dotcloud.models import Instance
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import cgroups, docker_launcher, leftovers, shimctl, swarm_launcher
from .shim import describe_exit
from .shimlog import InstanceLog

log = logs.get("runtime")
# A shim that dies sooner than this after its start died unstable (backoff);
# failures are forgotten once a shim has lived this long.
SHIM_STABLE = 10.0
SHIM_BACKOFF_MAX = 30.0
SHIM_CRASH_LOOP = 3
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3
# How long what a dead shim left running may take to finish its requests.
LEFTOVER_GRACE = 2.0
# Instance states the runtime is waiting to see change: worth a quick next pass.
TRANSITIONAL = {"new", "starting", "backoff", "stopping"}


@dataclass
class Spawn:
    """The runtime's bookkeeping of one instance's last shim start (mutable)."""
    pid: int | None        # None once it was found dead
    at: float              # time.monotonic() of the start
    failures: int = 0      # deaths in a row before SHIM_STABLE (reset once one lives it)
    retry_at: float = 0.0


class Reconciler:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.stopping: dict[int, float] = {}   # instance id -> when SIGTERM was sent
        self.spawns: dict[int, Spawn] = {}     # instance id -> its last shim start
        self.exits: dict[int, int] = {}        # reaped shim pid -> exit code
        self.terminating: dict[int, float] = {}  # instance id -> when its leftovers got SIGTERM
        self.before: dict[int, tuple[int, int]] = {}  # instance id -> (shim, restarts before it)

    def paths(self, inst: Instance) -> tuple[Path, Path, Path]:
        d = self.settings.paths.instance(inst.id)
        return d.spec, d.pid, d.status

    def reconcile(self) -> bool:
        """One pass; True when something is in flux and a quick next pass pays."""
        busy = False
        for inst in self.store.instances(live_only=True):
            try:
                if inst.desired == "run":
                    busy |= self._ensure_running(inst)
                elif inst.desired == "stop":
                    busy |= self._ensure_stopped(inst)
            except Exception:
                log.exception("reconcile_failed", app=inst.app, instance=inst.label, id=inst.id)
        if len(self.exits) > 1000:
            self.exits.clear()
        return busy

    def reaped(self, pid: int, code: int) -> None:
        """The daemon reaped one of its children (a shim it started)."""
        self.exits[pid] = code

    def stop_all(self, timeout: float) -> None:
        """Stop every shim (used when `up` stops and takes the apps with it)."""
        pids = []
        for inst in self.store.instances(live_only=True):
            spec, pidf, _ = self.paths(inst)
            pid = shimctl.alive(pidf, spec)
            if pid:
                shimctl.stop(pid)
                pids.append((pidf, spec))
        deadline = time.monotonic() + timeout
        for pidf, spec in pids:
            shimctl.wait_stopped(pidf, spec, max(0.1, deadline - time.monotonic()))

    # -- running ---------------------------------------------------------

    def _ensure_running(self, inst: Instance) -> bool:
        spec_path, pid_path, status_path = self.paths(inst)
        pid = shimctl.alive(pid_path, spec_path)
        if pid is None:
            return self._start(inst, spec_path, pid_path, status_path)
        if inst.pid != pid:
            log.info("instance_adopted", app=inst.app, instance=inst.label, id=inst.id, shim=pid)
            self.store.observe(inst.id, pid=pid)
        state = self._record_status(inst, pid, status_path)
        spawn = self.spawns.get(inst.id)
        if spawn is None:
            self.spawns[inst.id] = Spawn(pid, 0.0)  # adopted: started long ago
        elif spawn.failures and time.monotonic() - spawn.at >= SHIM_STABLE:
            spawn.failures = 0
        return state in TRANSITIONAL

    def _start(self, inst: Instance, spec_path: Path, pid_path: Path,
               status_path: Path) -> bool:
        now = time.monotonic()
        spawn = self.spawns.get(inst.id)
        if spawn is not None and spawn.pid is not None:
            self._shim_died(inst, spawn, now, shimctl.read_status(status_path) or {})
        if spawn is not None and now < spawn.retry_at:
            return True
        if status_path.exists() and self._leftovers_remain(inst, now):
            return True
        failures = spawn.failures if spawn else 0
        try:
            self._write_spec(inst, spec_path, pid_path, status_path)
            pid = shimctl.spawn(spec_path)
        except Exception as exc:
            self.spawns[inst.id] = Spawn(None, now, failures + 1,
                                         now + self._delay(failures + 1))
            log.error("instance_start_failed", app=inst.app, instance=inst.label, id=inst.id,
                      error=f"{type(exc).__name__}: {exc}", failures=failures + 1)
            self.store.observe(inst.id, state=self._failed_state(failures + 1), pid=None)
            return True
        # Written here as well as by the shim: until the shim writes it, the
        # next pass would not find the shim and would start a second one.
        write_atomic(pid_path, f"{pid}\n".encode())
        self.spawns[inst.id] = Spawn(pid, now, failures)
        log.info("instance_started", app=inst.app, instance=inst.label, id=inst.id,
                 port=inst.port, shim=pid, adopted=False, attempt=failures + 1)
        self.store.observe(inst.id, state="starting", pid=pid)
        return True

    def _leftovers_remain(self, inst: Instance, now: float) -> bool:
        """Stop what a shim that died left running; True while they get their grace."""
        tag = leftovers.tag(self.settings.data, inst.id)
        asked = self.terminating.get(inst.id)
        if asked is None:
            pids = leftovers.send(tag, signal.SIGTERM)
            if not pids:
                return False
            log.warning("instance_leftovers_stopping", app=inst.app, instance=inst.label,
                        id=inst.id, pids=pids)
            self._note(inst, f"stopping what the dead shim left running (pids "
                             f"{' '.join(map(str, pids))}), SIGKILL in {LEFTOVER_GRACE:g}s")
            self.terminating[inst.id] = now
            return True
        if now - asked < LEFTOVER_GRACE and leftovers.find(tag):
            return True
        del self.terminating[inst.id]
        pids = leftovers.send(tag, signal.SIGKILL)
        if pids:
            log.warning("instance_leftovers_killed", app=inst.app, instance=inst.label,
                        id=inst.id, pids=pids)
        return False

    def _shim_died(self, inst: Instance, spawn: Spawn, now: float, status: dict) -> None:
        code = self.exits.pop(spawn.pid, None)
        # A shim that dies again before it lived SHIM_STABLE is restarted with
        # backoff, and one that never reported (a bad spec, a broken
        # interpreter) failed to start at all: starting it at once would spin.
        # One that ran and was killed once is replaced without delay.
        reported = status.get("shim_pid") == spawn.pid
        spawn.failures = spawn.failures + 1 if now - spawn.at < SHIM_STABLE else 1
        delay = 0.0 if reported and spawn.failures == 1 else self._delay(spawn.failures)
        spawn.retry_at = now + delay
        log.warning("instance_shim_died", app=inst.app, instance=inst.label, id=inst.id,
                    shim=spawn.pid, status=code, failures=spawn.failures, reported=reported,
                    restarting_in=delay)
        how = "" if code is None else f" ({describe_exit(code)})"
        self._note(inst, f"the instance's shim (pid {spawn.pid}) died{how}; the runtime "
                         f"starts a new one in {delay:.1f}s")
        spawn.pid = None
        fields = {"state": self._failed_state(spawn.failures) if delay else "starting",
                  "pid": None}
        if code is not None:
            fields["last_exit"] = code
        self.store.observe(inst.id, **fields)

    @staticmethod
    def _delay(failures: int) -> float:
        return 0.0 if failures == 0 else min(2.0 ** (failures - 1), SHIM_BACKOFF_MAX)

    @staticmethod
    def _failed_state(failures: int) -> str:
        return "crashed" if failures >= SHIM_CRASH_LOOP else "backoff"

    # -- stopping --------------------------------------------------------

    def _ensure_stopped(self, inst: Instance) -> bool:
        spec_path, pid_path, status_path = self.paths(inst)
        self.spawns.pop(inst.id, None)
        self.terminating.pop(inst.id, None)
        self.before.pop(inst.id, None)
        pid = shimctl.alive(pid_path, spec_path)
        if pid is None:
            self.stopping.pop(inst.id, None)
            self.store.observe(inst.id, state="stopped", pid=None)
            log.info("instance_stopped", app=inst.app, instance=inst.label, id=inst.id)
            return False
        sent = self.stopping.get(inst.id)
        if sent is None:
            shimctl.stop(pid)
            self.stopping[inst.id] = time.monotonic()
            if inst.state != "stopping":
                self.store.observe(inst.id, state="stopping")
        elif time.monotonic() - sent > self.settings.stop_grace + 5:
            log.warning("instance_kill", app=inst.app, instance=inst.label, id=inst.id)
            shimctl.kill(pid)
        return True

    # -- reporting -------------------------------------------------------

    def _record_status(self, inst: Instance, shim: int, status_path: Path) -> str:
        status = shimctl.read_status(status_path)
        if not status or status.get("shim_pid") != shim:
            return inst.state  # nothing yet, or the report of a shim that died
        procs = [p for p in (status.get("processes") or {}).values() if isinstance(p, dict)]
        exits = [(p.get("last_exit_at") or 0, p.get("last_exit")) for p in procs
                 if p.get("last_exit") is not None]
        fields = {
            "state": status.get("state", inst.state),
            "restarts": self._restarts_before(inst, shim) + sum(p.get("restarts", 0)
                                                                for p in procs),
            "last_exit": max(exits)[1] if exits else None,
            "started": min((p.get("started_at") or 0 for p in procs), default=None) or None,
        }
        if any(getattr(inst, k) != v for k, v in fields.items()):
            if fields["state"] != inst.state:
                log.info("instance_state", app=inst.app, instance=inst.label, id=inst.id,
                         state=fields["state"], restarts=fields["restarts"],
                         last_exit=fields["last_exit"])
            self.store.observe(inst.id, **fields)
        return fields["state"]

    def _restarts_before(self, inst: Instance, shim: int) -> int:
        """Restarts of the instance before its current shim (which counts from 0)."""
        known = self.before.get(inst.id)
        if known is None or known[0] != shim:
            spec = read_json(self.paths(inst)[0]) or {}
            before = spec.get("restarts_before", 0) if isinstance(spec, dict) else 0
            known = self.before[inst.id] = (shim, before if isinstance(before, int) else 0)
        return known[1]

    def _note(self, inst: Instance, text: str) -> None:
        """A platform event in the instance's own log, beside its output."""
        if inst.spec is None:
            return  # a row too broken to have a log
        path = self.settings.paths.log_file(inst.spec.log)
        out = InstanceLog(str(path), LOG_MAX_BYTES, LOG_KEEP, on_error=lambda *_: None)
        for name in (p.name for p in inst.spec.processes):
            out.write(name, [f"[dotcloud] {text}"])
        out.close()

    def _write_spec(self, inst: Instance, spec_path: Path, pid_path: Path,
                    status_path: Path) -> None:
        spec = inst.spec
        if spec is None:
            raise SpecError(inst.spec_error)
        log_path = self.settings.paths.log_file(spec.log)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        marker = leftovers.tag(self.settings.data, inst.id)
        # A new shim for an instance that ran before: its start is a restart
        # too, and the count goes on from what the store last saw.
        before = inst.restarts + 1 if status_path.exists() else 0
        processes = shim_processes(self.settings, spec, {**spec.env, leftovers.TAG: marker})
        write_json(spec_path, {
            "instance": f"{inst.app}.{inst.label}#{inst.id}",
            "processes": processes,
            "log_path": str(log_path),
            "log_max_bytes": LOG_MAX_BYTES,
            "log_keep": LOG_KEEP,
            "status_path": str(status_path),
            "pid_path": str(pid_path),
            "stop_grace": self.settings.stop_grace,
            "backoff_initial": 1.0,
            "backoff_max": 30.0,
            "stable_after": 30.0,
            "crash_loop_restarts": 3,
            "restarts_before": before,   # the runtime's, not the shim's
            # Its limits, with a cgroup when its processes run on this host
            # (a container has its own: docker's flags).
            **({"cgroup": cgroups.shim_spec(self.settings.data, inst.id, spec.limits)}
               if spec.kind is Kind.DATA or self.settings.runtime == "process" else {}),
        })


def shim_processes(settings: Settings, spec: InstanceSpec, env: dict) -> dict:
    """What the shim runs for each of the instance's processes: how the
    instance runs is the runtime's choice (settings.runtime), not the
    deployer's. Data services run the host's own servers, never in an app
    container."""
    processes = {p.name: {"argv": list(p.argv), "cwd": p.cwd, "env": env}
                 for p in spec.processes}
    if spec.kind is Kind.DATA or settings.runtime == "process":
        return processes
    if settings.runtime == "swarm":
        return swarm_launcher.wrap(settings, app=spec.app, service=spec.service,
                                   instance=spec.instance_name, processes=processes,
                                   image=spec.image, constraints=dict(spec.placement))
    return docker_launcher.wrap(settings, app=spec.app, service_type=spec.service_type,
                                instance=spec.instance_name, processes=processes,
                                home=Path(spec.home), image=spec.image, user=spec.user,
                                limits=spec.limits)
