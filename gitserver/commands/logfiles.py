"""Reading instance logs (DATA/logs/APP/SERVICE.N.log, rotated to .1, .2, ...):
the last lines of several instances merged by time, and following them.

Log lines look like `2026-11-25T19:30:01.123Z web: text` (runtime.shimlog).
Reads only: it never writes, truncates or rotates a log, and only opens
files whose names match SERVICE.N.log inside the directory it is given.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

FILE_RE = re.compile(r"([a-z][a-z0-9_]{0,31})\.(\d{1,4})\.log")
LINE_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([^:]{1,64}): (.*)", re.S)
BLOCK = 64 * 1024
MAX_ROTATED = 9
READ_MAX = 1024 * 1024
MAX_PARTIAL = 64 * 1024


@dataclass(frozen=True)
class LogLine:
    time: str
    instance: str          # www.0
    process: str           # web
    text: str

    def doc(self) -> dict:
        service, number = self.instance.rsplit(".", 1)
        return {"time": self.time, "instance": self.instance, "service": service,
                "number": int(number), "process": self.process, "line": self.text}

    def show(self) -> str:
        return f"[{self.instance}] {self.time} {self.process}: {self.text}"


def parse_line(instance: str, raw: str, previous_time: str = "") -> LogLine:
    m = LINE_RE.fullmatch(raw)
    if m is None:
        return LogLine(previous_time, instance, "-", raw)
    return LogLine(m.group(1), instance, m.group(2), m.group(3))


def sources(log_dir: Path, service: str | None = None,
            number: int | None = None) -> dict[str, Path]:
    """instance label -> current log file, for the instances selected."""
    found = {}
    try:
        entries = sorted(os.listdir(log_dir))
    except FileNotFoundError:
        return {}
    for entry in entries:
        m = FILE_RE.fullmatch(entry)
        if m is None:
            continue
        if service is not None and m.group(1) != service:
            continue
        if number is not None and int(m.group(2)) != number:
            continue
        found[f"{m.group(1)}.{int(m.group(2))}"] = log_dir / entry
    return found


def _last_lines_of(f, end: int, n: int) -> list[bytes]:
    """The last n lines of an open binary file before offset end."""
    pos, data = end, b""
    while pos > 0 and data.count(b"\n") <= n:
        step = min(BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0:
        lines = lines[1:]   # the first one is cut
    return lines[-n:] if n else []


def tail_file(path: Path, n: int, end: int | None = None) -> list[str]:
    """The last n lines of a log, reaching into its rotated files if needed."""
    out: list[bytes] = []
    for k in range(MAX_ROTATED + 1):
        current = path if k == 0 else Path(f"{path}.{k}")
        try:
            with open(current, "rb") as f:
                stop = end if (k == 0 and end is not None) else os.fstat(f.fileno()).st_size
                out = _last_lines_of(f, stop, n - len(out)) + out
        except FileNotFoundError:
            if k > 0:
                break
        if len(out) >= n:
            break
    return [line.decode("utf-8", "replace") for line in out]


def merge(batches: dict[str, list[str]]) -> list[LogLine]:
    """Lines of several instances, each list already in order, interleaved by time."""
    lines = []
    for instance, raws in batches.items():
        previous = ""
        for seq, raw in enumerate(raws):
            line = parse_line(instance, raw, previous)
            previous = line.time
            lines.append((line.time, instance, seq, line))
    lines.sort(key=lambda t: t[:3])
    return [t[3] for t in lines]


class Follower:
    """Follows the selected log files of one app from where they end now,
    through rotation and new instances appearing."""

    def __init__(self, log_dir: Path, service: str | None, number: int | None):
        self.log_dir, self.service, self.number = log_dir, service, number
        self.files: dict[str, _Followed] = {}

    def start(self) -> dict[str, int]:
        """Open every selected file at its end; return label -> end offset."""
        for label, path in sources(self.log_dir, self.service, self.number).items():
            self.files[label] = _Followed.open(path, at_end=True)
        return {label: f.pos for label, f in self.files.items()}

    def rescan(self) -> None:
        """Pick up instances whose log appeared since (read from their start)."""
        for label, path in sources(self.log_dir, self.service, self.number).items():
            if label not in self.files:
                self.files[label] = _Followed.open(path, at_end=False)

    def read(self) -> list[LogLine]:
        return merge({label: f.read() for label, f in self.files.items()})

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()


class _Followed:
    """One followed log path: an open file, our offset in it, a partial line."""

    def __init__(self, path: Path, f, pos: int):
        self.path, self.f, self.pos, self.partial = path, f, pos, b""

    @classmethod
    def open(cls, path: Path, at_end: bool) -> "_Followed":
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return cls(path, None, 0)
        return cls(path, f, os.fstat(f.fileno()).st_size if at_end else 0)

    def read(self) -> list[str]:
        lines, at_end = self._drain()
        if at_end and self._replaced():
            # Rotated: what was left in the old file is read above; go on in the new one.
            if self.f is not None:
                self.f.close()
            try:
                self.f, self.pos = open(self.path, "rb"), 0
            except FileNotFoundError:
                self.f = None
            lines += self._drain()[0]
        return [line.decode("utf-8", "replace") for line in lines]

    def _drain(self) -> tuple[list[bytes], bool]:
        """New complete lines (at most READ_MAX bytes of them), and whether we reached the end."""
        if self.f is None:
            return [], True
        size = os.fstat(self.f.fileno()).st_size
        if size < self.pos:
            self.pos = 0   # truncated under us
        self.f.seek(self.pos)
        data = self.f.read(READ_MAX)
        self.pos += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_PARTIAL:
            lines.append(self.partial)
            self.partial = b""
        return lines, self.pos >= size

    def _replaced(self) -> bool:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return False
        return self.f is None or inode != os.fstat(self.f.fileno()).st_ino

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
