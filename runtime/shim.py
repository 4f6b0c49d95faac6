"""The per-instance shim: runs one instance's processes and keeps them running.

A small supervisor in the spirit of runit's runsv. The runtime daemon starts
one per instance with `python -m runtime.shim SPEC_PATH` (see
runtime.shimctl.spawn), detached in its own session, so the instance keeps
serving when the daemon dies; a restarted daemon finds the shim again through
its pid file. The shim starts every process in its own process group with
stdout and stderr on pipes, writes their lines with timestamps into the
instance log (runtime.shimlog), restarts a process that exits with
exponential backoff, and reports every state change in a status file
(the documented fields, plus `last_lines`: each process's last output lines,
for `status` to show why a crash loop crashes). What an exited process left
in its group gets SIGTERM at once and SIGKILL just before the restart. One
loop over a selector does it all: signal handlers only set a flag and wake
the loop, and children are reaped in the loop, never in a handler.

On SIGTERM or SIGINT it signals every process group, waits stop_grace
seconds, SIGKILLs what is left, writes the final status, removes its pid
file and exits 0.

It must never die from its children's behaviour (closed pipes, floods of
output, forks, instant exits, signals), never restart anything once it is
stopping, and never leave a child running after it is killed itself: each
child asks the kernel for SIGKILL when the shim dies (PR_SET_PDEATHSIG).
That reaches the direct child, the leader of its process group; processes a
shell started in the background are its grandchildren and may survive a
kill -9 of the shim (a normal stop signals whole groups and reaches them).
With a `cgroup` in its spec, every process runs in the instance's cgroup
(runtime.cgroups) under its limits: a stop ends by killing what is left in
it, setsid() or not, and the next shim of the instance empties a group its
killed predecessor left. A process the kernel killed for the group's memory
limit exits `out of memory (limit 512M)` (in the log and `last_exit_reason`).
"""
import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from dotcloud.fsutil import write_atomic, write_json
from runtime import cgroups, shimctl
from runtime.shimlog import InstanceLog
from runtime.shimproc import (PR_SET_CHILD_SUBREAPER, TAIL_CHARS, TAIL_LINES, Process, Stream,
                              describe_exit, launch, seconds, signal_group)
from runtime.shimspec import ShimSpec, SpecError, load

# Worst last: the top-level state is the worst state of any process.
STATE_RANK = {"stopped": 0, "running": 1, "starting": 2, "backoff": 3, "crashed": 4}
READ_SIZE = 64 * 1024
# Bounded, because a leftover child may keep the pipe full forever.
EXIT_DRAIN_READS = 16
KILL_WAIT = 2.0
STOP_POLL = 0.05
LEFTOVER_POLL = 0.1
# How often the group's OOM count is read: a child the kernel killed while the
# process itself lives on (a gunicorn worker) shows no exit to report it by.
OOM_POLL = 2.0
EXIT_FAILED_TO_START = 127
# A shim's warnings go to a file: a loop failing over and over must not fill it.
WARN_MAX = 200


class Shim:
    def __init__(self, spec: ShimSpec):
        self.spec = spec
        self.logger = None  # see _warn
        self.log = InstanceLog(spec.log_path, spec.log_max_bytes, spec.log_keep,
                               on_error=self._log_error)
        self.processes = [Process(p, spec.backoff_initial) for p in spec.processes]
        self.selector = selectors.DefaultSelector()
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.stop_signal = None
        self.stop_deadline = None
        self.stop_groups = ()
        self.kill_deadline = None
        self.done = False
        self.group = None   # the instance's cgroup (runtime.cgroups), when it has one
        self.oom_seen = 0   # the group's OOM kills already put down to an exit
        self.oom_reported = 0       # ...or to a child's death, in the log and status
        self.oom_check_at = 0.0
        # A swarm task's OOM kills as its launcher counts them (NAME.oom next
        # to its exit reason file, runtime.swarm_launcher): per process, the
        # count last read; all of them.
        self.oom_told: dict[str, int] = {}
        self.oom_told_total = 0
        self.warnings = 0

    # -- the loop -------------------------------------------------------

    def run(self) -> int:
        self._detach()
        wake = self._install_signals()
        try:
            write_atomic(self.spec.pid_path, f"{os.getpid()}\n".encode())
        except OSError as e:
            print(f"shim: cannot write pid file {self.spec.pid_path}: {e}", file=sys.stderr)
            return 1
        self._make_group()
        for proc in self.processes:
            self._start(proc)
        self._write_status()
        while not self.done:
            try:
                self._poll(wake)
                self._reap()
                self._tick()
            except Exception:
                # A bug here must not take the instance down with the shim.
                self._warn("shim_loop_error", exc_info=True)
                time.sleep(0.1)
        self._finish()
        return 0

    def _detach(self) -> None:
        try:
            os.setsid()
        except OSError:
            pass  # already a session leader (spawned with start_new_session)
        os.chdir("/")
        # Orphaned grandchildren come to us to be reaped, so a stopped
        # group empties instead of leaving zombies behind.
        self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def _install_signals(self) -> int:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the loop
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        return wake_r

    def _on_stop_signal(self, signum, frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def _poll(self, wake: int) -> None:
        for key, _ in self.selector.select(self._timeout()):
            if key.data is None:
                while True:
                    try:
                        if not os.read(wake, 4096):
                            break
                    except BlockingIOError:
                        break
            else:
                self._read(key.data)

    def _timeout(self) -> float | None:
        if self.stop_signal is not None:
            return STOP_POLL
        due = [t for p in self.processes for t in (p.restart_at, p.stable_at) if t is not None]
        if any(p.leftover_group is not None for p in self.processes):
            due.append(time.monotonic() + LEFTOVER_POLL)
        if self.group is not None or self._told_files():
            due.append(self.oom_check_at)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _tick(self) -> None:
        if self.stop_signal is not None:
            if self.stop_deadline is None:
                self._begin_stop()
            self._check_stopped()
            return
        now = time.monotonic()
        if self.group is not None and now >= self.oom_check_at:
            self.oom_check_at = now + OOM_POLL
            self._check_oom()
        elif self._told_files() and now >= self.oom_check_at:
            self.oom_check_at = now + OOM_POLL
            self._check_told_oom()
        for proc in self.processes:
            # Forget a group as soon as it is empty: its number is free for
            # reuse then, and a SIGKILL must never reach a stranger's group.
            if proc.leftover_group is not None and not signal_group(proc.leftover_group, 0):
                proc.leftover_group = None
            if proc.stable_at is not None and now >= proc.stable_at:
                self._became_stable(proc)
            if proc.restart_at is not None and now >= proc.restart_at:
                proc.restart_at = None
                proc.restarts += 1
                proc.unstable += 1
                self._kill_leftovers(proc)
                self._start(proc)
                self._write_status()

    # -- processes ------------------------------------------------------

    def _start(self, proc: Process) -> None:
        proc.started_at = time.time()
        proc.started_mono = time.monotonic()
        self._told_reason(proc)     # a stale one is not this run's
        if proc.spec.exit_reason_file is not None:
            self._read_told_oom(proc)       # the last launcher's, before a new one
            self.oom_told[proc.name] = 0
            with contextlib.suppress(OSError):
                os.unlink(Path(proc.spec.exit_reason_file).with_suffix(".oom"))
        try:
            proc.popen, fds = launch(proc.spec, self.libc, self.spec.user, enter=self._enter())
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            self._exited(proc, EXIT_FAILED_TO_START, f"failed to start ({e})")
            return
        for fd in fds:
            self.selector.register(fd, selectors.EVENT_READ, Stream(fd, proc))
        proc.state = "crashed" if proc.unstable >= self.spec.crash_loop_restarts else "running"
        proc.stable_at = proc.started_mono + self.spec.stable_after
        self._event(proc, f"started pid={proc.popen.pid}")

    def _kill_leftovers(self, proc: Process) -> None:
        group, proc.leftover_group = proc.leftover_group, None
        if group is not None and signal_group(group, signal.SIGKILL):
            self._event(proc, f"killed what was left of process group {group}")

    def _reap(self) -> None:
        for pid, code in shimctl.reap_exited():
            for proc in self.processes:
                if proc.popen is not None and proc.popen.pid == pid:
                    proc.popen.returncode = code  # keeps subprocess from polling a reused pid
                    self._exited(proc, code, describe_exit(code))
            # Any other pid was an orphaned grandchild: reaping it was all.

    def _exited(self, proc: Process, code: int, reason: str) -> None:
        # What it wrote before it exited is in its pipes already: log that
        # first, so its last words come before the line saying it exited.
        for key in list(self.selector.get_map().values()):
            if key.data is not None and key.data.process is proc:
                self._read(key.data, limit=EXIT_DRAIN_READS)
        proc.last_exit_at = time.time()
        now = time.monotonic()
        pgid = proc.popen.pid if proc.popen is not None else None
        proc.popen = None
        proc.stable_at = None
        proc.last_exit = code
        reason = proc.last_exit_reason = (self._oom_reason(code) or self._told_reason(proc)
                                          or reason)
        if self.stop_deadline is not None:
            proc.state = "stopped"
            self._event(proc, f"stopped ({reason})", proc.last_exit_at)
            self._write_status()
            return
        # What it left in its group (gunicorn's workers, say) may be in the
        # middle of answering a request: ask them to finish and go now, and
        # kill what is left just before the restart.
        if pgid is not None and signal_group(pgid, signal.SIGTERM):
            proc.leftover_group = pgid
            reason += ", stopping the processes it left in its group"
        if now - proc.started_mono >= self.spec.stable_after:
            self._reset_backoff(proc)
        delay = proc.delay
        proc.delay = min(delay * 2, self.spec.backoff_max)
        proc.restart_at = now + delay
        if proc.unstable >= self.spec.crash_loop_restarts:
            proc.state = "crashed"
            reason += (f", crash loop ({proc.unstable} restarts without running "
                       f"{seconds(self.spec.stable_after)}s)")
        else:
            proc.state = "backoff"
        # Stamped with the time the delay counts from, so the log shows it exactly.
        self._event(proc, f"{reason}, restarting in {seconds(delay)}s", proc.last_exit_at)
        self._write_status()

    def _became_stable(self, proc: Process) -> None:
        self._reset_backoff(proc)
        if proc.state == "crashed":
            proc.state = "running"
            self._event(proc, f"running for {seconds(self.spec.stable_after)}s, "
                              "out of the crash loop")
            self._write_status()

    def _reset_backoff(self, proc: Process) -> None:
        proc.stable_at = None
        proc.delay = self.spec.backoff_initial
        proc.unstable = 0

    # -- the instance's cgroup ------------------------------------------

    def _make_group(self) -> None:
        wanted = self.spec.cgroup
        if wanted is None:
            return
        try:
            # A leftover of a shim killed with -9 is emptied and made afresh.
            self.group = cgroups.create(Path(wanted.data), wanted.name, wanted.limits)
        except cgroups.CgroupError as e:
            self._warn("cgroup_failed", error=str(e))   # run on, without its limits
        if self.group is None:
            self._warn("cgroup_unavailable", limits=wanted.limits.describe())

    def _enter(self):
        return self.group.preexec() if self.group is not None else None

    def _oom_reason(self, code: int) -> str | None:
        """'out of memory (limit 512M)' when the kernel killed it for the group's memory.

        Any failure after a new OOM kill in the group counts: a shell running
        the app's command exits 137 when its child is the one killed.
        """
        if self.group is None or code == 0:
            return None
        kills = self.group.oom_kills()
        if kills <= self.oom_seen:
            return None
        self.oom_seen = kills
        return self.group.out_of_memory()

    def _check_oom(self) -> None:
        """Say so, in the log and the status, when the kernel killed a process
        of the group for memory that was none of ours to see exit."""
        kills = self.group.oom_kills()
        if kills <= max(self.oom_reported, self.oom_seen):
            return
        self.oom_reported = kills
        reason = self.group.out_of_memory()
        for proc in self.processes:
            self._event(proc, f"a process of this instance was killed: {reason}")
        self._write_status()

    def _told_reason(self, proc: Process) -> str | None:
        """What its launcher wrote of why it exited (a container's OOM kill), once."""
        path = proc.spec.exit_reason_file
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                told = f.read(TAIL_CHARS).strip()
            os.unlink(path)
        except OSError:
            return None
        if told.startswith("out of memory"):
            self.oom_seen += 1
            self._read_told_oom(proc)     # that kill is this exit's, not a worker's
        return told or None

    def _told_files(self) -> bool:
        return self.group is None and any(p.spec.exit_reason_file for p in self.processes)

    def _read_told_oom(self, proc: Process) -> str | None:
        """New OOM kills its launcher counted since last read: why, or None."""
        try:
            count, _, why = Path(proc.spec.exit_reason_file).with_suffix(".oom") \
                .read_text().partition("\n")
            count = int(count)
        except (OSError, ValueError):
            return None
        new = count - self.oom_told.get(proc.name, 0)
        if new <= 0:
            return None
        self.oom_told[proc.name] = count
        self.oom_told_total += new
        return why.strip() or "out of memory"

    def _check_told_oom(self) -> None:
        """A swarm task's process killed for memory while the task lives on,
        in the log and the status, as _check_oom says it of a cgroup's."""
        told = [(proc, why) for proc in self.processes
                if proc.spec.exit_reason_file and (why := self._read_told_oom(proc))]
        for proc, why in told:
            self._event(proc, f"a process of this instance was killed: {why}")
        if told:
            self._write_status()

    def _group_status(self) -> dict:
        if self.spec.cgroup is None:
            # A container's OOM kills, as its launcher told them.
            kills = max(self.oom_seen, self.oom_told_total)
            return {"oom_kills": kills} if kills else {}
        return {"limits": self.spec.cgroup.limits.to_dict(),
                "cgroup": self.group.relative if self.group is not None else None,
                "oom_kills": max(self.oom_seen, self.group.oom_kills() if self.group else 0)}

    # -- stopping -------------------------------------------------------

    def _begin_stop(self) -> None:
        name = signal.Signals(self.stop_signal).name
        self.stop_deadline = time.monotonic() + self.spec.stop_grace
        groups = []
        for proc in self.processes:
            proc.restart_at = proc.stable_at = None
            if proc.leftover_group is not None:
                groups.append(proc.leftover_group)  # SIGTERMed already; waited for below
                proc.leftover_group = None
            if proc.popen is None:
                proc.state = "stopped"
                self._event(proc, f"stopped (got {name} while waiting to restart)")
                continue
            proc.state = "stopping"
            groups.append(proc.popen.pid)
            self._event(proc, f"stopping (got {name}, sending SIGTERM)")
            signal_group(proc.popen.pid, signal.SIGTERM)
        self.stop_groups = tuple(groups)
        self._write_status()

    def _check_stopped(self) -> None:
        now = time.monotonic()
        running = [p for p in self.processes if p.popen is not None]
        # Emptied groups are dropped at once: their numbers may be reused.
        groups = self.stop_groups = tuple(g for g in self.stop_groups if signal_group(g, 0))
        if not running and not groups:
            self.done = True
        elif self.kill_deadline is None and now >= self.stop_deadline:
            for proc in running:
                self._event(proc, f"still running after {seconds(self.spec.stop_grace)}s, "
                                  "sending SIGKILL")
            for group in groups:
                signal_group(group, signal.SIGKILL)
            self.kill_deadline = now + KILL_WAIT
        elif self.kill_deadline is not None and now >= self.kill_deadline:
            self._warn("shim_kill_timeout", left=[p.popen.pid for p in running])
            self.done = True

    def _finish(self) -> None:
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                self._read(key.data, drain=True)
        if self.group is not None:
            # What left every process group (setsid) is still in the cgroup.
            self.group.remove()
        self._write_status()
        try:
            with open(self.spec.pid_path) as f:
                mine = f.read().strip() == str(os.getpid())
            if mine:
                os.unlink(self.spec.pid_path)
        except OSError:
            pass
        self.log.close()

    # -- output and status ----------------------------------------------

    def _read(self, stream: Stream, drain: bool = False, limit: int = 1) -> None:
        reads = 0
        while True:
            try:
                data = os.read(stream.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                self._output(stream.process, stream.splitter.feed(data))
            else:
                self.selector.unregister(stream.fd)
                os.close(stream.fd)
                self._output(stream.process, stream.splitter.close())
                return
            reads += 1
            if not drain and reads >= limit:
                return

    def _output(self, proc: Process, lines: list[str]) -> None:
        if lines:
            proc.tail.extend(line[:TAIL_CHARS] for line in lines[-TAIL_LINES:])
            self.log.write(proc.name, lines)

    def _event(self, proc: Process, text: str, now: float | None = None) -> None:
        self.log.write(proc.name, [f"[dotcloud] {text}"], now)

    def _log_error(self, event: str, error: OSError) -> None:
        self._warn(event, path=self.spec.log_path, error=str(error))

    def _write_status(self) -> None:
        if self.done:
            state = "stopped"
        elif self.stop_deadline is not None:
            state = "stopping"
        else:
            state = max((p.state for p in self.processes), key=STATE_RANK.__getitem__)
        status = {"instance": self.spec.instance, "shim_pid": os.getpid(), "state": state,
                  "processes": {p.name: p.status() for p in self.processes},
                  "updated_at": time.time(), **self._group_status()}
        try:
            write_json(self.spec.status_path, status)
        except OSError as e:
            self._warn("status_write_failed", path=self.spec.status_path, error=str(e))

    def _warn(self, event: str, **fields) -> None:
        """Something went wrong in the shim itself: say so on its stderr (a
        file of the runtime's, runtime.shimctl), up to WARN_MAX times."""
        self.warnings += 1
        if self.warnings > WARN_MAX:
            return
        if self.warnings == WARN_MAX:
            event, fields = "shim_warnings_dropped", {"after": WARN_MAX, "last": event}
        if self.logger is None:
            # structlog costs a shim 10 MB of its 25 MB; most shims never need it.
            from dotcloud import logs
            logs.configure()
            self.logger = logs.get("shim", instance=self.spec.instance)
        self.logger.warning(event, **fields)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m runtime.shim SPEC_PATH", file=sys.stderr)
        return 2
    try:
        spec = load(argv[0])
    except SpecError as e:
        print(f"shim: invalid spec: {e}", file=sys.stderr)
        return 2
    other = shimctl.alive(spec.pid_path, argv[0])
    if other is not None and other != os.getpid():
        print(f"shim: {spec.instance} is already supervised by pid {other}", file=sys.stderr)
        return 1
    return Shim(spec).run()


if __name__ == "__main__":
    sys.exit(main())
