"""The runtime daemon: one loop that reconciles, woken by its control socket,
by SIGCHLD, and by a timer (gunicorn's arbiter shape).

Signal handlers only note the signal; the loop does the work. Instances run
under their own shims in their own sessions, so this daemon can be killed
-9 and restarted at any time: it adopts the shims it finds.
"""
import json
import os
import signal
import socket
import threading

from dotcloud import logs
from dotcloud.settings import Settings
from dotcloud.state import Store

from .reconcile import Reconciler

log = logs.get("runtime")
TICK = 1.0


class Daemon:
    def __init__(self, settings: Settings, stop_apps: bool = False):
        self.settings = settings
        self.stop_apps = stop_apps
        self.store = Store(settings.db_path)
        self.reconciler = Reconciler(settings, self.store)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.passes = 0
        self.in_pass = False
        self.done = threading.Condition()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: self.wake.set())
        sock = self._listen()
        threading.Thread(target=self._serve_control, args=(sock,), daemon=True).start()
        log.info("runtime_started", pid=os.getpid())
        while not self.stopping.is_set():
            self.wake.wait(TICK)
            with self.done:
                self.wake.clear()
                self.in_pass = True
            self._reap()
            self.reconciler.reconcile()
            with self.done:
                self.passes += 1
                self.in_pass = False
                self.done.notify_all()
        sock.close()
        if self.stop_apps:
            log.info("runtime_stopping_apps")
            self.reconciler.stop_all(self.settings.stop_grace + 2)
        log.info("runtime_stopped", apps_left_running=not self.stop_apps)

    def _on_stop(self, signum, frame) -> None:
        self.stopping.set()
        self.wake.set()

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _listen(self) -> socket.socket:
        path = self.settings.run_dir / "runtime.sock"
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(64)
        return sock

    def _serve_control(self, sock: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30)
                line = conn.makefile("rb").readline()
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("expected a JSON object")
                if req.get("op") == "reconcile":
                    reply = {"ok": self._reconcile_now(timeout=20)}
                elif req.get("op") == "ping":
                    reply = {"ok": True, "pid": os.getpid()}
                else:
                    reply = {"ok": False, "error": f"unknown op {req.get('op')!r}"}
            except (ValueError, OSError) as exc:
                reply = {"ok": False, "error": str(exc)}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass

    def _reconcile_now(self, timeout: float) -> bool:
        """Wait for a whole pass that started after this request."""
        with self.done:
            # A pass already running may have read the store before the caller wrote it.
            target = self.passes + (2 if self.in_pass else 1)
            self.wake.set()
            return self.done.wait_for(lambda: self.passes >= target, timeout)


def serve(settings: Settings, stop_apps: bool = False) -> None:
    Daemon(settings, stop_apps).run()
