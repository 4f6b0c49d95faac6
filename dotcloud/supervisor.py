"""`dotcloud-server up`: runs the SSH server, the router, the runtime and the
certificate daemon (acme) as four OS processes, restarts any that dies (with backoff), and stops them on
Ctrl-C / SIGTERM. With keep_apps (`up --keep-apps`) the apps keep running
after it stops, and the next `up` adopts them; by default they stop too.

One loop, gunicorn's arbiter shape: signal handlers only note the signal
and wake the loop through a pipe; the loop reaps, schedules restarts and
starts what is due. It says who runs in DATA/run/up.json (its own pid and
each daemon's).

It only starts and watches processes; it never reads the store.
"""
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

from . import filemodes, logs
from .fsutil import write_json
from .settings import Settings
from .takeover import take_over

log = logs.get("supervisor")
DAEMONS = ("runtime", "router", "ssh", "acme")
# Stopped in this order: nothing new comes in, then routing stops, then apps.
STOP_ORDER = (("ssh", "router", "acme"), ("runtime",))
FAILURE_WINDOW = 60.0
RESTART_FIRST = 0.1
RESTART_MAX = 10.0
IDLE_WAKE = 1.0
PR_SET_CHILD_SUBREAPER = 36


def free_port(bind: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as s:
        s.bind((bind, 0))
        return s.getsockname()[1]


def restart_delay(failures: int) -> float:
    """Seconds before restarting a daemon that died `failures` times lately:
    at once the first time, then 0.1 s, doubling up to RESTART_MAX."""
    if failures <= 1:
        return 0.0
    return min(RESTART_FIRST * 2 ** (failures - 2), RESTART_MAX)


class Supervisor:
    def __init__(self, settings: Settings, keep_apps: bool = False):
        if settings.ssh_port == 0:
            settings = replace(settings, ssh_port=free_port(settings.bind))
        if settings.http_port == 0:
            settings = replace(settings, http_port=free_port(settings.bind))
        self.settings = settings
        self.keep_apps = keep_apps
        self.procs: dict[str, subprocess.Popen] = {}
        self.failures: dict[str, list[float]] = {name: [] for name in DAEMONS}
        self.due: dict[str, float] = {}          # daemon -> when to restart it
        self.stopping = False

    def argv(self, name: str) -> list[str]:
        s = self.settings
        argv = [sys.executable, "-m", "dotcloud.cli", "--data", str(s.data)]
        if s.log_json:
            argv.append("--log-json")
        argv += [name, "--bind", s.bind, "--ssh-port", str(s.ssh_port),
                 "--http-port", str(s.http_port), "--https-port", str(s.https_port),
                 "--domain", s.domain, "--runtime", s.runtime]
        if s.admin_port:
            argv += ["--admin-port", str(s.admin_port)]
        if name == "runtime" and not self.keep_apps:
            argv.append("--stop-apps")
        return argv

    def start(self, name: str) -> None:
        # Own process group: a Ctrl-C in the terminal reaches only us, and we
        # stop the daemons in order (runtime last, so apps stop after routing).
        self.procs[name] = subprocess.Popen(self.argv(name), start_new_session=True)
        log.info("daemon_started", daemon=name, pid=self.procs[name].pid)
        self._write_pids()

    def run(self) -> int:
        take_over(self.settings.data, self.settings.stop_grace + 5)
        wake = self._install_signals()
        _secure_data(self.settings)
        # Shims outlive a runtime that is killed; as their subreaper we reap
        # them when they exit, whoever runs the apps by then.
        _become_subreaper()
        for name in DAEMONS:
            self.start(name)
        s = self.settings
        print(f"dotcloud: ssh     listening on {s.bind}:{s.ssh_port}  "
              f"(git remote: ssh://dotcloud@{s.bind}:{s.ssh_port}/APP)", flush=True)
        print(f"dotcloud: router  listening on {s.bind}:{s.http_port}  "
              f"(apps at http://APP.{s.domain}:{s.http_port}/)", flush=True)
        if s.https_port:
            print(f"dotcloud: https   listening on {s.bind}:{s.https_port}  "
                  f"(apps at https://APP.{s.domain}:{s.https_port}/)", flush=True)
        print(f"dotcloud: acme    certificates from {s.acme_directory}"
              + ("" if s.https_port else " (idle: HTTPS is off)"), flush=True)
        print(f"dotcloud: runtime running ({s.runtime}); data in {s.data}; apps "
              f"{'keep running' if self.keep_apps else 'stop'} when this stops", flush=True)
        while not self.stopping:
            now = time.monotonic()
            timeout = min([IDLE_WAKE] + [t - now for t in self.due.values()])
            try:
                select.select([wake], [], [], max(0.0, timeout))
            except InterruptedError:
                pass
            _drain(wake)
            if not self.stopping:
                self._check()
        self._stop_all()
        return 0

    def _install_signals(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the loop
        return wake_r

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _check(self) -> None:
        now = time.monotonic()
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            del self.procs[name]
            recent = [t for t in self.failures[name] if now - t < FAILURE_WINDOW] + [now]
            self.failures[name] = recent
            delay = restart_delay(len(recent))
            self.due[name] = now + delay
            log.warning("daemon_died", daemon=name, status=proc.returncode,
                        restarting_in=delay)
        for name, at in list(self.due.items()):
            if now >= at:
                del self.due[name]
                try:
                    self.start(name)
                except OSError as exc:  # out of processes or descriptors: try again
                    log.error("daemon_start_failed", daemon=name, error=str(exc))
                    self.due[name] = now + RESTART_MAX
        self._reap_orphans()

    def _reap_orphans(self) -> None:
        """Reap children that are not our daemons (shims orphaned by a runtime
        that died), leaving the daemons' exits to their Popen objects."""
        daemons = {p.pid for p in self.procs.values()}
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in daemons:
                return
            try:
                os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                pass
            log.info("orphan_reaped", pid=info.si_pid, status=info.si_status)

    def _write_pids(self) -> None:
        try:
            write_json(self.settings.paths.daemon_info("up"), {
                "pid": os.getpid(), "keep_apps": self.keep_apps,
                "daemons": {name: p.pid for name, p in self.procs.items()}})
        except OSError as exc:
            log.warning("pid_file_failed", error=str(exc))

    def _stop_all(self) -> None:
        for group in STOP_ORDER:
            procs = [(n, self.procs[n]) for n in group
                     if n in self.procs and self.procs[n].poll() is None]
            for _, proc in procs:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.settings.stop_grace + 10
            for name, proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("daemon_kill", daemon=name)
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                log.info("daemon_stopped", daemon=name, status=proc.returncode)
        self.settings.paths.daemon_info("up").unlink(missing_ok=True)


def _secure_data(settings: Settings) -> None:
    """DATA's modes, so that apps reach their own files and nothing else of it."""
    closed = filemodes.secure(settings.paths)
    if closed and filemodes.dropping():
        names = " ".join(str(p) for p in reversed(closed))
        print(f"dotcloud: warning: apps run as their own users and cannot reach the data "
              f"directory: closed to others: {names} (chmod o+x {names})",
              file=sys.stderr, flush=True)
        log.warning("data_dir_closed", directories=names)


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: orphans go to init, as they would anyway


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            return
