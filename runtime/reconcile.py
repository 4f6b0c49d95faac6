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
from dataclasses import replace
from pathlib import Path

from dotcloud import logs
from dotcloud.fsutil import read_json, write_atomic, write_json
from dotcloud.desired import Desired, InstanceSpec, InstanceState, Kind, SpecError
from dotcloud.models import Instance
from dotcloud.dyno import with_dyno
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import apptmp, cgroups, decide, docker_launcher, leftovers, shimctl, swarm_launcher
from .shim import describe_exit
from .shimlog import InstanceLog

log = logs.get("runtime")
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3
# Instance states the runtime is waiting to see change: worth a quick next pass.
TRANSITIONAL = {InstanceState.NEW, InstanceState.STARTING, InstanceState.BACKOFF,
                InstanceState.STOPPING}


class Reconciler:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.books: dict[int, decide.Book] = {}   # instance id -> the runtime's bookkeeping
        self.exits: dict[int, int] = {}        # reaped shim pid -> exit code
        self.before: dict[int, tuple[int, int]] = {}  # instance id -> (shim, restarts before it)

    def paths(self, inst: Instance) -> tuple[Path, Path, Path]:
        d = self.settings.paths.instance(inst.id)
        return d.spec, d.pid, d.status

    def reconcile(self) -> bool:
        """One pass; True when something is in flux and a quick next pass pays."""
        busy = False
        for inst in self.store.instances(live_only=True):
            try:
                busy |= self._pass(inst)
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

    # -- one instance: observe, decide, act --------------------------------

    def _pass(self, inst: Instance) -> bool:
        if inst.desired not in (Desired.RUN, Desired.STOP):
            return False
        now = time.monotonic()
        book = self.books.get(inst.id)
        decision = decide.decide(inst.desired, self._observe(inst, book), book, now,
                                 self.settings.stop_grace)
        if decision.book is None:
            self.books.pop(inst.id, None)
        else:
            self.books[inst.id] = decision.book
        if inst.desired == Desired.STOP:
            self.before.pop(inst.id, None)
        busy = decision.busy
        for action in decision.actions:
            busy |= self._act(inst, action, now)
        return busy

    def _observe(self, inst: Instance, book: decide.Book | None) -> decide.Observed:
        spec_path, pid_path, status_path = self.paths(inst)
        shim = shimctl.alive(pid_path, spec_path)
        seen = decide.Observed(state=inst.state, recorded_pid=inst.pid, shim=shim)
        if shim is not None or inst.desired != Desired.RUN:
            return seen
        last = book.spawn.pid if book is not None and book.spawn is not None else None
        status = (shimctl.read_status(status_path) or {}) if last is not None else {}
        ran_before = status_path.exists()
        return replace(
            seen, reported=last is not None and status.get("shim_pid") == last,
            exit_code=self.exits.pop(last, None) if last is not None else None,
            ran_before=ran_before,
            leftovers=tuple(leftovers.find(leftovers.tag(self.settings.data, inst.id)))
            if ran_before else ())

    def _act(self, inst: Instance, action: decide.Action, now: float) -> bool:
        """Carry out one action; True when it calls for a quick next pass."""
        where = dict(app=inst.app, instance=inst.label, id=inst.id)
        match action:
            case decide.Adopt(pid):
                log.info("instance_adopted", **where, shim=pid)
                self.store.observe(inst.id, pid=pid)
            case decide.Report(pid):
                return self._record_status(inst, pid, self.paths(inst)[2]) in TRANSITIONAL
            case decide.ShimDied(pid, code, failures, delay, reported, state):
                # Its own last words (a traceback), from its stderr file.
                log.warning("instance_shim_died", **where, shim=pid, status=code,
                            failures=failures, reported=reported, restarting_in=delay,
                            stderr=shimctl.last_stderr(
                                self.settings.paths.instance(inst.id).stderr))
                how = "" if code is None else f" ({describe_exit(code)})"
                self._note(inst, f"the instance's shim (pid {pid}) died{how}; the runtime "
                                 f"starts a new one in {delay:.1f}s")
                fields = {"state": state, "pid": None}
                if code is not None:
                    fields["last_exit"] = code
                self.store.observe(inst.id, **fields)
            case decide.TermLeftovers():
                pids = leftovers.send(leftovers.tag(self.settings.data, inst.id), signal.SIGTERM)
                log.warning("instance_leftovers_stopping", **where, pids=pids)
                self._note(inst, f"stopping what the dead shim left running (pids "
                                 f"{' '.join(map(str, pids))}), SIGKILL in "
                                 f"{decide.LEFTOVER_GRACE:g}s")
            case decide.KillLeftovers():
                pids = leftovers.send(leftovers.tag(self.settings.data, inst.id), signal.SIGKILL)
                if pids:
                    log.warning("instance_leftovers_killed", **where, pids=pids)
            case decide.Start(attempt):
                self._start(inst, attempt, now)
            case decide.Stop(pid):
                shimctl.stop(pid)
            case decide.MarkStopping():
                self.store.observe(inst.id, state=InstanceState.STOPPING)
            case decide.Kill(pid):
                log.warning("instance_kill", **where)
                shimctl.kill(pid)
            case decide.MarkStopped():
                self.store.observe(inst.id, state=InstanceState.STOPPED, pid=None)
                log.info("instance_stopped", **where)
        return False

    def _start(self, inst: Instance, attempt: int, now: float) -> None:
        spec_path, pid_path, status_path = self.paths(inst)
        try:
            self._write_spec(inst, spec_path, pid_path, status_path)
            pid = shimctl.spawn(spec_path, self.settings.paths.instance(inst.id).stderr)
        except Exception as exc:
            self.books[inst.id], state = decide.start_failed(self.books.get(inst.id), now)
            log.error("instance_start_failed", app=inst.app, instance=inst.label, id=inst.id,
                      error=f"{type(exc).__name__}: {exc}", failures=attempt)
            self.store.observe(inst.id, state=state, pid=None)
            return
        # Written here as well as by the shim: until the shim writes it, the
        # next pass would not find the shim and would start a second one.
        write_atomic(pid_path, f"{pid}\n".encode())
        self.books[inst.id] = decide.started(self.books.get(inst.id), pid, now)
        log.info("instance_started", app=inst.app, instance=inst.label, id=inst.id,
                 port=inst.port, shim=pid, adopted=False, attempt=attempt)
        self.store.observe(inst.id, state=InstanceState.STARTING, pid=pid)

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

    def _user(self, spec: InstanceSpec) -> list:
        """The shim spec's user: the uid, gid and the app's private /tmp."""
        user = apptmp.user(self.settings.paths, spec.app, *spec.user[:2])
        return [*user[:3], list(user[3])] if len(user) == 4 else list(user)

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
        processes = shim_processes(self.settings, spec, {**spec.env, leftovers.TAG: marker},
                                   reasons=spec_path.parent)
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
               if on_host(self.settings, spec) else {}),
            # The app's own uid (dotcloud.appusers): the shim drops to it, unless
            # a launcher runs the processes (it needs the engine; the container
            # gets the uid).
            **({"user": self._user(spec)} if spec.user and on_host(self.settings, spec)
               else {}),
        })


def on_host(settings: Settings, spec: InstanceSpec) -> bool:
    """Whether the instance's processes run on this host, not in a container:
    the process runtime's, and data servers except under swarm."""
    return settings.runtime == "process" or (spec.kind is Kind.DATA
                                             and settings.runtime != "swarm")


def shim_processes(settings: Settings, spec: InstanceSpec, env: dict,
                   reasons: Path | None = None) -> dict:
    """What the shim runs for each of the instance's processes: how the
    instance runs is the runtime's choice (settings.runtime), not the
    deployer's. Data services run the host's own servers, never in an app
    container; under swarm, a task of the data image on their node."""
    processes = {p.name: {"argv": list(p.argv), "cwd": p.cwd,
                          "env": env if spec.kind is Kind.DATA else
                          with_dyno(env, f"{p.name}.{spec.number + 1}")}
                 for p in spec.processes}
    if on_host(settings, spec):
        return processes
    if spec.kind is Kind.DATA:
        from . import swarm_data     # the docker SDK: only under swarm
        return swarm_data.wrap(settings, spec, env, reasons=reasons)
    if settings.runtime == "swarm":
        return swarm_launcher.wrap(settings, app=spec.app, service=spec.service,
                                   instance=spec.instance_name, processes=processes,
                                   image=spec.image, constraints=dict(spec.placement),
                                   user=spec.user, limits=spec.limits, reasons=reasons)
    return docker_launcher.wrap(settings, app=spec.app, service_type=spec.service_type,
                                instance=spec.instance_name, processes=processes,
                                home=Path(spec.home), image=spec.image, user=spec.user,
                                limits=spec.limits, reasons=reasons)
