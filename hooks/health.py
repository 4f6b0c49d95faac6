"""Active health checks of new instances, before the router switches to them.

HTTP services: GET of the health path with the app's own Host header; any
status below 500 means responsive. Workers: running, without a restart, for
a grace period. Checked every `interval` seconds, never a fixed sleep.

An instance whose app exits before it answered has crashed at boot (its
shim reports the exit). One whose shim died, the app with it and no exit of
it reported, has not: the runtime starts a new shim a second later, and only
the crash loop of its shims fails the deploy.

An instance that accepts the connection and closes it without a word, check
after check, fails at once instead of at the timeout: that is an app dying
on every request (a gunicorn worker crashing, its master forking another),
not one still booting, whose connections wait in the listen backlog.
Likewise an instance answering 5xx to every check for a while (12 checks in
a row over at least 2 s) fails at once, reported with what it answered: that
is an app failing on every request, while a few seconds of 503 are left to
one still warming up.
"""
import http.client
import time
from dataclasses import dataclass, field
from pathlib import Path

from dotcloud import placement
from dotcloud.errors import DeployError
from dotcloud.fsutil import read_json
from dotcloud.models import Instance
from dotcloud.state import Store

WORKER_GRACE = 1.5
CLOSED = -1           # probe(): connected, then closed or reset before any response
CLOSED_IN_A_ROW = 3   # such answers that fail the deploy at once
FAILING_IN_A_ROW = 12  # 5xx answers in a row that fail the deploy at once...
FAILING_FOR = 2.0      # ...once they have lasted this long (seconds)


@dataclass(frozen=True)
class Check:
    instance_id: int
    label: str
    http: bool
    path: str
    host: str
    timeout: float
    interval: float
    # The shim's status file, which says when an exit was the kernel's OOM kill.
    status_path: Path | None = None


@dataclass(frozen=True)
class Answer:
    status: int           # CLOSED: the connection was cut without a response
    reason: str = ""


def probe(port: int, path: str, host: str, timeout: float = 2.0,
          address: str = placement.LOCAL) -> Answer | None:
    """The response's status and reason; status CLOSED when the connection was
    cut without one; None when nothing answered (refused, or timed out)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.connect()
    except OSError:
        conn.close()
        return None
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "dotcloud-healthcheck"})
        response = conn.getresponse()
        return Answer(response.status, response.reason)
    except (ConnectionResetError, BrokenPipeError):      # RemoteDisconnected included
        return Answer(CLOSED)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@dataclass
class HttpCheck:
    """The checks of one HTTP instance, one after another: whether it answered
    (any status below 500), and whether its answers so far already prove it
    never will (the connection cut, or 5xx, check after check)."""
    path: str
    host: str
    cuts: int = 0                   # checks in a row, up to the last, cut without an answer
    errors: int = 0                 # checks in a row, up to the last, answered 5xx
    errors_since: float = 0.0       # when the first of them was
    answered: dict[str, None] = field(default_factory=dict)   # their status lines, in order

    def check(self, port: int, address: str | None = placement.LOCAL) -> bool:
        # No address: placed nowhere yet (a swarm task being scheduled).
        answer = probe(port, self.path, self.host, address=address) if address else None
        status = answer.status if answer is not None else None
        self.cuts = self.cuts + 1 if status == CLOSED else 0
        if status is not None and status >= 500:
            if not self.errors:
                self.errors_since = time.monotonic()
            self.errors += 1
            self.answered[f"{status} {answer.reason}".strip()] = None
        else:
            self.errors = 0
            self.answered.clear()
        return status is not None and CLOSED < status < 500

    def failure(self, out_of_time: bool = False) -> str | None:
        """Why the instance has failed, going by its answers; None while it may
        still come up. Out of time, the 5xx it was answering is the reason."""
        if self.cuts >= CLOSED_IN_A_ROW:
            return (f"not responsive: it closed the connection without an answer, "
                    f"{self.cuts} checks in a row")
        if self.errors and (out_of_time or (
                self.errors >= FAILING_IN_A_ROW
                and time.monotonic() - self.errors_since >= FAILING_FOR)):
            times = "once" if self.errors == 1 else f"{self.errors} times in a row"
            return f"answered {', '.join(self.answered)} to GET {self.path} {times}"
        return None


def wait_responsive(store: Store, checks: list[Check], data: Path | None = None) -> None:
    """Wait until every instance is responsive; raise DeployError naming the
    first that crashed, failed its checks, or timed out. `data`: the data
    directory, where instances on other nodes say their address."""
    started = time.monotonic()
    pending = {c.instance_id: c for c in checks}
    answers = {c.instance_id: HttpCheck(c.path, c.host) for c in checks}
    while pending:
        for iid, check in list(pending.items()):
            inst = store.instance(iid)
            if _failed(inst, check):
                raise DeployError(f"{check.label} crashed at boot "
                                  f"({_oom(check) or _exit(inst.last_exit, check)})")
            if check.http:
                # Probe at once rather than wait for the runtime to report
                # "running": an answer on the instance's own port is the proof.
                ready = answers[iid].check(inst.port, placement.LOCAL if data is None else
                                           placement.address(data, inst.spec))
            else:
                ready = _worker_ready(inst, check)
            if ready:
                del pending[iid]
                continue
            failure = answers[iid].failure()
            if failure:
                raise DeployError(f"{check.label} {failure}")
            if time.monotonic() - started > check.timeout:
                why = answers[iid].failure(out_of_time=True)
                raise DeployError(f"{check.label} "
                                  f"{why or f'not responsive after {check.timeout:g}s'}")
        if pending:
            time.sleep(min(c.interval for c in pending.values()))


def _failed(inst: Instance, check: Check | None = None) -> bool:
    # A new instance that exits before it ever answered has failed its deploy:
    # waiting for the crash-loop verdict would only delay the push's answer.
    if not (inst.state in ("backoff", "crashed") or inst.restarts >= 1):
        return False
    # But one whose shim died, not the app (no exit of it reported: it went
    # with its shim), is the runtime's to start again a second later; only
    # its crash loop fails the deploy.
    return inst.state == "crashed" or check is None or _app_exited(check)


def _app_exited(check: Check) -> bool:
    """Whether its shim reported an exit of one of its processes."""
    if check.status_path is None:
        return True             # nothing to tell them apart by
    status = read_json(check.status_path)
    return any(isinstance(p, dict) and p.get("last_exit") is not None
               for p in ((status or {}).get("processes") or {}).values()) \
        if isinstance(status, dict) else False


def _worker_ready(inst: Instance, check: Check | None = None) -> bool:
    # Restarted only because its shim died (a new shim, no exit of the app): ready all the same.
    unbroken = inst.restarts == 0 or (check is not None and check.status_path is not None
                                      and not _app_exited(check))
    return (inst.state == "running" and unbroken
            and time.time() - (inst.started or time.time()) >= WORKER_GRACE)


def _oom(check: Check) -> str | None:
    """'out of memory (limit 512M)' when the shim says the kernel killed it for that."""
    status = read_json(check.status_path) if check.status_path is not None else None
    for proc in ((status or {}).get("processes") or {}).values():
        reason = proc.get("last_exit_reason") if isinstance(proc, dict) else None
        if isinstance(reason, str) and reason.startswith("out of memory"):
            return reason
    return None


def _exit(code: int | None, check: Check | None = None) -> str:
    if check is not None and not _app_exited(check):
        return "its shim died again and again: the runtime's log has its last words"
    if code is None:
        return "no exit status"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

