"""The runtime daemon: one loop that reconciles, woken by its control socket,
by SIGCHLD, and by a timer (gunicorn's arbiter shape).

Signal handlers only note the signal; the loop does the work. Instances run
under their own shims in their own sessions, so this daemon can be killed
-9 and restarted at any time: it adopts the shims it finds. Only one runtime
runs per data directory (an exclusive lock on DATA/run/runtime.lock; a
second one waits for it), and it says who it is in DATA/run/runtime.json.

It must never die from what it finds in the store or on disk: a pass that
fails is logged and the next one runs.
"""
import fcntl
import json
import os
import select
import signal
import socket
import threading
import time

from dotcloud import logs
from dotcloud.fsutil import write_json
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import cgroup_sweeper, shimctl, swarm_sweeper, sweeper
from .reconcile import Reconciler
from .swarm_routes import RouteFollower

log = logs.get("runtime")
TICK = 1.0
# While an instance is starting or restarting, its shim's reports are read
# this often, so the store (and whoever watches it) learns of them soon.
BUSY_TICK = 0.2
LOCK_POLL = 0.2


class Daemon:
    def __init__(self, settings: Settings, stop_apps: bool = False):
        self.settings = settings
        self.stop_apps = stop_apps
        self.store = Store(settings.paths.db)
        self.reconciler = Reconciler(settings, self.store)
        # Under the swarm runtime instances move between nodes: routes follow.
        self.follower = RouteFollower(settings, self.store) if settings.runtime == "swarm" \
            else None
        # Signals and control requests wake the loop through this pipe: a
        # handler that took a lock could deadlock with the loop holding it.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stopping = False
        self.passes = 0
        self.in_pass = False
        self.done = threading.Condition()

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the loop
        lock = self._lock()
        if lock is None:
            return
        write_json(self.settings.paths.daemon_info("runtime"),
                   {"pid": os.getpid(), "started": time.time()})
        sock = self._listen()
        threading.Thread(target=self._serve_control, args=(sock,), daemon=True).start()
        if self.settings.runtime == "docker":
            sweeper.start(self.settings, threading.Event())
        elif self.settings.runtime == "swarm":
            swarm_sweeper.start(self.settings, threading.Event())
        # Groups that builds, `run` commands and shims killed with -9 left behind.
        cgroup_sweeper.start(self.settings, threading.Event())
        log.info("runtime_started", pid=os.getpid())
        busy = True
        while not self.stopping:
            self._sleep(BUSY_TICK if busy else TICK)
            with self.done:
                self.in_pass = True
            busy = self._pass()
            with self.done:
                self.passes += 1
                self.in_pass = False
                self.done.notify_all()
        sock.close()
        # Nobody answers there any more: callers see "not running", not a hang.
        for path in (self.settings.paths.socket("runtime"),
                     self.settings.paths.daemon_info("runtime")):
            path.unlink(missing_ok=True)
        if self.stop_apps:
            log.info("runtime_stopping_apps")
            self.reconciler.stop_all(self.settings.stop_grace + 2)
        log.info("runtime_stopped", apps_left_running=not self.stop_apps)

    def _on_stop(self, signum, frame) -> None:
        self.stopping = True

    def _sleep(self, timeout: float) -> None:
        """Until a signal or a request wakes us, or timeout."""
        try:
            select.select([self.wake_r], [], [], timeout)
        except InterruptedError:
            pass
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"w")
        except BlockingIOError:
            pass  # the pipe is full: the loop has plenty to wake it

    def _lock(self) -> int | None:
        """Hold DATA/run/runtime.lock for the daemon's life; None if told to stop first."""
        fd = os.open(self.settings.paths.daemon_lock("runtime"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        waiting = False
        while not self.stopping:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if not waiting:
                    log.warning("runtime_waiting", reason="another runtime holds runtime.lock")
                    waiting = True
                self._sleep(LOCK_POLL)
        os.close(fd)
        return None

    def _pass(self) -> bool:
        try:
            self._reap()
            busy = self.reconciler.reconcile()
            if self.follower is not None:
                self.follower.follow()
            return busy
        except Exception:
            # The store busy or broken: the next pass tries again.
            log.exception("reconcile_pass_failed")
            return False

    def _reap(self) -> None:
        for pid, code in shimctl.reap_exited():
            self.reconciler.reaped(pid, code)

    def _listen(self) -> socket.socket:
        path = self.settings.paths.socket("runtime")
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(64)
        return sock

    def _serve_control(self, sock: socket.socket) -> None:
        while not self.stopping:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30)
                line = conn.makefile("rb").readline(65536)
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
            self._wake()
            return self.done.wait_for(lambda: self.passes >= target, timeout)


def serve(settings: Settings, stop_apps: bool = False) -> None:
    Daemon(settings, stop_apps).run()
