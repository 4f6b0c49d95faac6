"""Closes the gap between the instances the store wants and the shims that run.

One pass of reconcile(): every instance that should run has a live shim
(started if missing, e.g. after a crash of the shim or of the host); every
instance that should stop gets SIGTERM, then SIGKILL after the grace period;
what the shims report (state, restarts, last exit) goes back to the store.
Everything it knows can be read back from the store and the shims' files,
so killing the daemon loses nothing.
"""
import json
import time
from pathlib import Path

from dotcloud import logs
from dotcloud.fsutil import write_json
from dotcloud.models import Instance
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import shimctl

log = logs.get("runtime")


class Reconciler:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.stopping: dict[int, float] = {}   # instance id -> when SIGTERM was sent

    def paths(self, inst: Instance) -> tuple[Path, Path, Path]:
        d = self.settings.data / "instances" / str(inst.id)
        return d / "shim.json", d / "shim.pid", d / "status.json"

    def reconcile(self) -> None:
        for inst in self.store.instances(live_only=True):
            try:
                if inst.desired == "run":
                    self._ensure_running(inst)
                elif inst.desired == "stop":
                    self._ensure_stopped(inst)
            except Exception:
                log.exception("reconcile_failed", app=inst.app, instance=inst.label, id=inst.id)

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

    def _ensure_running(self, inst: Instance) -> None:
        spec_path, pid_path, status_path = self.paths(inst)
        pid = shimctl.alive(pid_path, spec_path)
        if pid is None:
            self._write_spec(inst, spec_path, pid_path, status_path)
            pid = shimctl.spawn(spec_path)
            log.info("instance_started", app=inst.app, instance=inst.label, id=inst.id,
                     port=inst.port, shim=pid, adopted=False)
            self.store.observe(inst.id, state="starting", pid=pid)
            return
        if inst.pid != pid:
            log.info("instance_adopted", app=inst.app, instance=inst.label, id=inst.id, shim=pid)
            self.store.observe(inst.id, pid=pid)
        self._record_status(inst, status_path)

    def _ensure_stopped(self, inst: Instance) -> None:
        spec_path, pid_path, status_path = self.paths(inst)
        pid = shimctl.alive(pid_path, spec_path)
        if pid is None:
            self.stopping.pop(inst.id, None)
            self.store.observe(inst.id, state="stopped", pid=None)
            log.info("instance_stopped", app=inst.app, instance=inst.label, id=inst.id)
            return
        sent = self.stopping.get(inst.id)
        if sent is None:
            shimctl.stop(pid)
            self.stopping[inst.id] = time.monotonic()
            if inst.state != "stopping":
                self.store.observe(inst.id, state="stopping")
        elif time.monotonic() - sent > self.settings.stop_grace + 5:
            log.warning("instance_kill", app=inst.app, instance=inst.label, id=inst.id)
            shimctl.kill(pid)

    def _record_status(self, inst: Instance, status_path: Path) -> None:
        status = shimctl.read_status(status_path)
        if not status:
            return
        procs = status.get("processes", {}).values()
        exits = [(p.get("last_exit_at") or 0, p.get("last_exit")) for p in procs
                 if p.get("last_exit") is not None]
        fields = {
            "state": status.get("state", inst.state),
            "restarts": sum(p.get("restarts", 0) for p in procs),
            "last_exit": max(exits)[1] if exits else None,
            "started": min((p.get("started_at") or 0 for p in procs), default=None) or None,
        }
        if any(getattr(inst, k) != v for k, v in fields.items()):
            if fields["state"] != inst.state:
                log.info("instance_state", app=inst.app, instance=inst.label, id=inst.id,
                         state=fields["state"], restarts=fields["restarts"],
                         last_exit=fields["last_exit"])
            self.store.observe(inst.id, **fields)

    def _write_spec(self, inst: Instance, spec_path: Path, pid_path: Path,
                    status_path: Path) -> None:
        spec = json.loads(inst.spec)
        log_path = self.settings.data / "logs" / spec["log"]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(spec_path, {
            "instance": f"{inst.app}.{inst.label}#{inst.id}",
            "processes": spec["processes"],
            "log_path": str(log_path),
            "log_max_bytes": 10 * 1024 * 1024,
            "log_keep": 3,
            "status_path": str(status_path),
            "pid_path": str(pid_path),
            "stop_grace": self.settings.stop_grace,
            "backoff_initial": 1.0,
            "backoff_max": 30.0,
            "stable_after": 30.0,
            "crash_loop_restarts": 3,
        })
