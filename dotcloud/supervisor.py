"""`dotcloud-server up`: runs the SSH server, the router and the runtime as
three OS processes, restarts any that dies (with backoff), and stops them on
Ctrl-C / SIGTERM.

It only starts and watches processes; it never reads the store.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

from . import logs
from .settings import Settings

log = logs.get("supervisor")
DAEMONS = ("runtime", "router", "ssh")


def free_port(bind: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as s:
        s.bind((bind, 0))
        return s.getsockname()[1]


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
        self.stopping = False

    def argv(self, name: str) -> list[str]:
        s = self.settings
        argv = [sys.executable, "-m", "dotcloud.cli", "--data", str(s.data)]
        if s.log_json:
            argv.append("--log-json")
        argv += [name, "--bind", s.bind, "--ssh-port", str(s.ssh_port),
                 "--http-port", str(s.http_port), "--domain", s.domain, "--runtime", s.runtime]
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

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for name in DAEMONS:
            self.start(name)
        s = self.settings
        print(f"dotcloud: ssh     listening on {s.bind}:{s.ssh_port}  "
              f"(git remote: ssh://dotcloud@{s.bind}:{s.ssh_port}/APP)", flush=True)
        print(f"dotcloud: router  listening on {s.bind}:{s.http_port}  "
              f"(apps at http://APP.{s.domain}:{s.http_port}/)", flush=True)
        print(f"dotcloud: runtime running ({s.runtime}); data in {s.data}", flush=True)
        while not self.stopping:
            time.sleep(0.2)
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None and not self.stopping:
                    self._restart(name, proc.returncode)
        self._stop_all()
        return 0

    def _restart(self, name: str, code: int) -> None:
        now = time.monotonic()
        recent = [t for t in self.failures[name] if now - t < 60] + [now]
        self.failures[name] = recent
        delay = min(0.1 * 2 ** (len(recent) - 1), 10)
        log.warning("daemon_died", daemon=name, status=code, restarting_in=delay)
        time.sleep(delay)
        if not self.stopping:
            self.start(name)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        for name in ("ssh", "router", "runtime"):
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.settings.stop_grace + 10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.info("daemon_stopped", daemon=name)
