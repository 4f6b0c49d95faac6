"""What the resilience tests look at: daemon and instance pids, processes,
ports, the instances table. Read from the data directory the way an
operator would (pid files, status files, the store), never through mocks.
"""
import json
import os
import socket
import time
from pathlib import Path

from dotcloud.control import ControlUnavailable, request
from dotcloud.models import Instance
from dotcloud.state import Store


def wait_until(predicate, timeout: float = 30.0, what: str = "condition", poll: float = 0.02):
    """Poll predicate until it returns something true; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def kill9(pid: int) -> None:
    assert alive(pid), f"pid {pid} is not running"
    os.kill(pid, 9)


def daemon_pid(data: Path, name: str) -> int | None:
    """The live pid of daemon `name` (ssh, router, runtime) from its own pid file."""
    info = _json(data / "run" / f"{name}.json")
    pid = info.get("pid") if info else None
    return pid if alive(pid) else None


def up_pids(data: Path) -> dict:
    return _json(data / "run" / "up.json") or {}


def wait_daemon_replaced(data: Path, name: str, old: int, timeout: float = 30.0) -> int:
    return wait_until(lambda: (lambda p: p if p and p != old else None)(daemon_pid(data, name)),
                      timeout, f"a new {name} daemon")


def runtime_ping(data: Path) -> int | None:
    try:
        return request(data / "run" / "runtime.sock", {"op": "ping"}, timeout=5).get("pid")
    except ControlUnavailable:
        return None


def runtime_pass(data: Path) -> bool:
    """Ask the runtime for a whole reconcile pass and wait for it."""
    try:
        return bool(request(data / "run" / "runtime.sock", {"op": "reconcile"},
                            timeout=30).get("ok"))
    except ControlUnavailable:
        return False


def instances(data: Path, app: str, service: str = "www") -> list[Instance]:
    """The app's instances that should run, in number order."""
    store = Store(data / "dotcloud.db")
    try:
        return [i for i in store.instances(app) if i.desired == "run" and i.service == service]
    finally:
        store.close()


def instance(data: Path, iid: int) -> Instance:
    store = Store(data / "dotcloud.db")
    try:
        return store.instance(iid)
    finally:
        store.close()


def shim_status(data: Path, iid: int) -> dict:
    return _json(data / "instances" / str(iid) / "status.json") or {}


def process_pid(data: Path, iid: int, name: str = "web") -> int | None:
    """The pid of one of the instance's processes (gunicorn's master for `web`)."""
    proc = shim_status(data, iid).get("processes", {}).get(name) or {}
    return proc.get("pid") if alive(proc.get("pid")) else None


def shims_for(data: Path, iid: int) -> list[int]:
    """Pids of every live shim process running instance iid's spec."""
    spec = os.fsencode(str(data / "instances" / str(iid) / "shim.json"))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runtime.shim" in args and spec in args:
            found.append(int(entry.name))
    return found


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def get_direct(port: int, host: str, path: str = "/") -> tuple[int, str] | None:
    """GET straight from an instance's port, bypassing the router."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def instance_log(data: Path, app: str, label: str) -> str:
    path = data / "logs" / app / f"{label}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

