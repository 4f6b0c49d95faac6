"""Per-app deploy locks: fcntl.flock on DATA/run/locks/APP.lock.

The kernel drops a flock when the last process holding its file descriptor
exits, so a lock never outlives its holder, even after kill -9. The SSH
daemon takes the lock and hands the descriptor to the pipeline subprocess,
so whichever of the two lives longer keeps it.
"""
import fcntl
import os

from .datadir import DataDir


class AppLock:
    def __init__(self, paths: DataDir, app: str):
        self.path = paths.app_lock(app)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self._open()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def acquire(self) -> None:
        self._open()
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _open(self) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
