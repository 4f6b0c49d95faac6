"""Request counters and latency histograms per app, rendered as Prometheus text.

Plain counters updated in place by the router's own loop (one thread); the
admin endpoint renders them. Nothing here does I/O.
"""
from __future__ import annotations

from bisect import bisect_left

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

    def observe(self, app: str, status: int, seconds: float) -> None:
        stats = self._apps.get(app)
        if stats is None:
            stats = self._apps[app] = _AppStats()
        codes = stats.codes
        codes[status] = codes.get(status, 0) + 1
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.total += seconds

    def render(self, gauges: dict | None = None) -> bytes:
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
