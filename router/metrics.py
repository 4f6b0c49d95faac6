"""Request counters and latency histograms per app, rendered as Prometheus text.

A request only appends its duration to a list (per app and status); the
lists are folded into the counters and buckets in bulk (a C sort and a
bisection per bucket) by the router's clock and before every render, which
costs a fraction of counting each request as it ends. One thread (the
router's loop) touches it; nothing here does I/O.
"""
from __future__ import annotations

from bisect import bisect_right

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)


class _AppStats:
    # Only what each request must touch; the error and request counts are
    # sums of these, made when the metrics are read.
    __slots__ = ("codes", "buckets", "total")

    def __init__(self):
        self.codes = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    @property
    def errors(self) -> int:
        return sum(n for code, n in self.codes.items() if code >= 500 or code == 0)

    @property
    def count(self) -> int:
        return sum(self.buckets)


class Metrics:
    def __init__(self):
        self._apps = {}
        self._pending = {}     # app -> {status: [seconds, ...]} not yet folded

    def observe(self, app: str, status: int, seconds: float) -> None:
        by_status = self._pending.get(app)
        if by_status is None:
            by_status = self._pending[app] = {}
        durations = by_status.get(status)
        if durations is None:
            by_status[status] = [seconds]
        else:
            durations.append(seconds)

    def fold(self) -> None:
        """Count what observe() collected since the last fold."""
        pending, self._pending = self._pending, {}
        for app, by_status in pending.items():
            stats = self._apps.get(app)
            if stats is None:
                stats = self._apps[app] = _AppStats()
            for status, durations in by_status.items():
                stats.codes[status] = stats.codes.get(status, 0) + len(durations)
                durations.sort()
                buckets = stats.buckets
                done = 0
                for i, bound in enumerate(BUCKETS):
                    # a bucket counts durations up to its bound, inclusive
                    upto = bisect_right(durations, bound, done)
                    buckets[i] += upto - done
                    done = upto
                buckets[-1] += len(durations) - done
                stats.total += sum(durations)

    def render(self, gauges: dict | None = None) -> bytes:
        self.fold()
        lines = [
            "# HELP dotcloud_router_requests_total Requests answered, by app and status.",
            "# TYPE dotcloud_router_requests_total counter"]
        apps = sorted(self._apps.items())
        for app, stats in apps:
            for code, n in sorted(stats.codes.items()):
                lines.append(f'dotcloud_router_requests_total{{app="{_label(app)}",code="{code}"}} {n}')
        lines += ["# HELP dotcloud_router_errors_total Requests answered with a 5xx status.",
                  "# TYPE dotcloud_router_errors_total counter"]
        for app, stats in apps:
            lines.append(f'dotcloud_router_errors_total{{app="{_label(app)}"}} {stats.errors}')
        lines += ["# HELP dotcloud_router_request_duration_seconds Time from request head to end of response.",
                  "# TYPE dotcloud_router_request_duration_seconds histogram"]
        for app, stats in apps:
            label = _label(app)
            running = 0
            for bound, n in zip(BUCKETS + (float("inf"),), stats.buckets):
                running += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'dotcloud_router_request_duration_seconds_bucket{{app="{label}",le="{le}"}} {running}')
            lines.append(f'dotcloud_router_request_duration_seconds_sum{{app="{label}"}} {stats.total:.6f}')
            lines.append(f'dotcloud_router_request_duration_seconds_count{{app="{label}"}} {stats.count}')
        for name, (help_text, value) in sorted((gauges or {}).items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return ("\n".join(lines) + "\n").encode()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
