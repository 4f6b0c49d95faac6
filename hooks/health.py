"""Active health checks of new instances, before the router switches to them.

HTTP services: GET of the health path with the app's own Host header; any
status below 500 means responsive. Workers: running, without a restart, for
a grace period. Checked every `interval` seconds, never a fixed sleep.

An instance that accepts the connection and closes it without a word, check
after check, fails at once instead of at the timeout: that is an app dying
on every request (a gunicorn worker crashing, its master forking another),
not one still booting, whose connections wait in the listen backlog.
"""
import http.client
import time
from dataclasses import dataclass

from dotcloud.errors import DeployError
from dotcloud.models import Instance
from dotcloud.state import Store

WORKER_GRACE = 1.5
CLOSED = -1           # probe(): connected, then closed or reset before any response
CLOSED_IN_A_ROW = 3   # such answers that fail the deploy at once


@dataclass(frozen=True)
class Check:
    instance_id: int
    label: str
    http: bool
    path: str
    host: str
    timeout: float
    interval: float


def probe(port: int, path: str, host: str, timeout: float = 2.0) -> int | None:
    """The response's status; CLOSED when the connection was cut without one;
    None when nothing answered (refused, or timed out)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.connect()
    except OSError:
        conn.close()
        return None
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "dotcloud-healthcheck"})
        return conn.getresponse().status
    except (ConnectionResetError, BrokenPipeError):      # RemoteDisconnected included
        return CLOSED
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def http_check(port: int, path: str, host: str, cut: int) -> tuple[bool, int]:
    """One check of an HTTP instance: whether it answered (any status below
    500), and how many checks in a row, this one included, had the connection
    cut without an answer (`cut`: that count before this check)."""
    status = probe(port, path, host)
    return status is not None and CLOSED < status < 500, cut + 1 if status == CLOSED else 0


def wait_responsive(store: Store, checks: list[Check]) -> None:
    """Wait until every instance is responsive; raise DeployError naming the
    first that crashed or timed out."""
    started = time.monotonic()
    pending = {c.instance_id: c for c in checks}
    closed = dict.fromkeys(pending, 0)
    while pending:
        for iid, check in list(pending.items()):
            inst = store.instance(iid)
            if _failed(inst):
                raise DeployError(f"{check.label} crashed at boot ({_exit(inst.last_exit)})")
            if check.http:
                # Probe at once rather than wait for the runtime to report
                # "running": an answer on the instance's own port is the proof.
                ready, closed[iid] = http_check(inst.port, check.path, check.host, closed[iid])
            else:
                ready = _worker_ready(inst)
            if ready:
                del pending[iid]
                continue
            if closed[iid] >= CLOSED_IN_A_ROW:
                raise DeployError(f"{check.label} not responsive: it closed the connection "
                                  f"without an answer, {closed[iid]} checks in a row")
            if time.monotonic() - started > check.timeout:
                raise DeployError(f"{check.label} not responsive after {check.timeout:g}s")
        if pending:
            time.sleep(min(c.interval for c in pending.values()))


def _failed(inst: Instance) -> bool:
    # A new instance that exits before it ever answered has failed its deploy:
    # waiting for the crash-loop verdict would only delay the push's answer.
    return inst.state in ("backoff", "crashed") or inst.restarts >= 1


def _worker_ready(inst: Instance) -> bool:
    return (inst.state == "running" and inst.restarts == 0
            and time.time() - (inst.started or time.time()) >= WORKER_GRACE)


def _exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

