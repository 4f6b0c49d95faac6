"""Plain-text shapes for people: aligned tables, times, durations.

Pure functions of their arguments; they never write anywhere themselves
(commands print through the context) and never decide what is shown.
"""
import time


def table(headers: list[str], rows: list[list], empty: str = "") -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    if not rows:
        return empty + "\n" if empty else ""
    cells = [[_cell(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if value is None:
        return "-"
    text = str(value)
    # A cell is one line: a value with a newline would break the columns.
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")


def when(ts: float | None) -> str | None:
    """UTC, to the second: 2026-11-25 19:30:01."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def iso(ts: float | None) -> str | None:
    """UTC ISO 8601 for JSON: 2026-11-25T19:30:01Z."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def duration(seconds: float | None) -> str | None:
    """3s, 4m10s, 2h05m, 3d04h."""
    if seconds is None:
        return None
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def short_rev(revision: str) -> str:
    return revision if revision.startswith("rsync-") else revision[:7]


def shown(text: str, limit: int = 40) -> str:
    """A user's word safe to echo in one line: escapes control characters, cut short."""
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit - 3] + "..."
