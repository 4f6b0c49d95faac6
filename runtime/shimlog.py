"""Instance output into timestamped lines in a size-rotated log file.

`LineSplitter` cuts a byte stream into text lines (long lines split at
16 KiB, undecodable bytes replaced, the last partial line given on close).
`InstanceLog` appends `2026-11-25T19:30:01.123Z web: line` records to one
file opened O_APPEND and rotates it by size. Several shims may append to the
same path (the old and new generation of one instance during a deploy), so
whole records go out in single writes, rotation happens under an flock of
the current file, and a writer reopens the path when its inode changed.

It must never raise out of `write`: a full disk or a vanished log directory
costs log lines, never the shim that calls it.
"""
import fcntl
import os
import time

MAX_LINE = 16 * 1024
WRITE_CHUNK = 64 * 1024


def timestamp(now: float) -> str:
    """UTC with milliseconds: 2026-11-25T19:30:01.123Z."""
    millis = int(now * 1000)
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


class LineSplitter:
    """Turns chunks of bytes into complete lines of text, one stream each."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.pending = b""

    def feed(self, data: bytes) -> list[str]:
        buf = self.pending + data
        lines = buf.split(b"\n")
        self.pending = lines.pop()
        out = []
        for line in lines:
            out.extend(self._cut(line, final=True))
        out.extend(self._cut(self.pending, final=False))
        return out

    def close(self) -> list[str]:
        """The partial line left when the stream ends, if any."""
        rest, self.pending = self.pending, b""
        return self._cut(rest, final=True) if rest else []

    def _cut(self, line: bytes, final: bool) -> list[str]:
        out = []
        while len(line) > self.max_line:
            cut = self.max_line
            # Back off to a UTF-8 character boundary so a valid character
            # is not turned into two replacement marks by the split.
            while cut > self.max_line - 3 and line[cut] & 0xC0 == 0x80:
                cut -= 1
            out.append(line[:cut].decode("utf-8", "replace"))
            line = line[cut:]
        if final:
            out.append(line.decode("utf-8", "replace"))
        else:
            self.pending = line
        return out


class InstanceLog:
    """Appends timestamped records to log_path, rotating log -> log.1 -> ... log.keep."""

    def __init__(self, path: str, max_bytes: int, keep: int, on_error=None):
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.on_error = on_error or (lambda event, error: None)
        self.fd = None
        self.inode = None

    def write(self, name: str, lines: list[str], now: float | None = None) -> None:
        if not lines:
            return
        prefix = f"{timestamp(time.time() if now is None else now)} {name}: "
        chunk, size = [], 0
        try:
            for line in lines:
                record = (prefix + line + "\n").encode("utf-8", "replace")
                chunk.append(record)
                size += len(record)
                # Whole records per write (appends of several shims never mix
                # inside a line), in chunks, so a file outgrows max_bytes by
                # one chunk at most before it is rotated.
                if size >= WRITE_CHUNK:
                    self._append(b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                self._append(b"".join(chunk))
        except OSError as e:
            self.on_error("log_write_failed", e)
            self.close()

    def _append(self, data: bytes) -> None:
        self._ensure_open()
        os.write(self.fd, data)
        if os.fstat(self.fd).st_size > self.max_bytes:
            self._rotate()

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = self.inode = None

    def _ensure_open(self) -> None:
        if self.fd is not None:
            try:
                if os.stat(self.path).st_ino == self.inode:
                    return
            except FileNotFoundError:
                pass
            # Another writer rotated (or someone removed) the file: follow the path.
            self.close()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.inode = os.fstat(self.fd).st_ino

    def _rotate(self) -> None:
        # The lock is on the current file, which every writer of this path
        # holds open: whoever gets it second sees that the path moved on.
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == self.inode and os.fstat(self.fd).st_size > self.max_bytes:
                self._shift()
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self._ensure_open()

    def _shift(self) -> None:
        if self.keep == 0:
            os.unlink(self.path)
            return
        for n in range(self.keep - 1, 0, -1):
            try:
                os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")
            except FileNotFoundError:
                pass
        os.rename(self.path, f"{self.path}.1")
