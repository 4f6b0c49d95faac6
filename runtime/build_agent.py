"""The build agent: what a build node runs for one service build, and the
file sync both ends of it share.

Under the swarm runtime a build on a node labelled role=build is a swarm
task (runtime.build_nodes makes the service): this file, handed to the task
as a swarm config, run by the base image's own python3 (standard library
only, Python 3.9 or later: both base images have 3.11). It listens on the
node's address (DOTCLOUD_AGENT_ADDR, DOTCLOUD_AGENT_PORT), answers one request per
connection: a JSON line, then for some a body. Every request carries the
build's token, which the task reads from its swarm secret; one without it
is refused and the connection closed. Requests are served one at a time.

  hello                      -> {"ok", "hostname"}
  put  + delta               -> {"ok"}: the manager's changes, applied
  run {argv, cwd, env, timeout}
                             -> {"line"}..., then {"exit", "oom_kills"}
                                (or {"error", "errno"}: it could not start)
  get                        -> {"ok"} + delta: what changed here since the
                                last put or get
  bye                        -> {"ok"}, and the agent exits

A delta is a stream of records, each a JSON line and for a file its bytes:
deletions first (deepest first), then directories, files and links in path
order, then {"op": "end"}. Each end keeps a manifest (path -> kind, mode,
owner, size, mtime, link target) of what it had at the last sync and sends
only what differs from it, so a step pays for what it changed, not for the
whole tree. What a delta may touch is fixed by the receiver (its roots):
nothing outside them, nothing written through a symbolic link (each parent
is checked to be a real directory, a link found where a file or directory
goes is replaced, never followed), never a hard link.

Steps run as the app's uid (DOTCLOUD_AGENT_USER), under `/bin/sh -c 'exec
"$@" 2>&1'` as in the docker runtime's build containers (first in line for
the OOM killer, before the agent), in a session of their own; the agent kills what is left of one when it ends, times out or
the manager hangs up. The agent itself is root in the task with only the
capabilities the sync needs (owners and modes as the manager's, into sealed
directories, killing the steps): the steps have none, and cannot read the
token.
"""
from __future__ import annotations

import errno
import hmac
import json
import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

# Header lines are small; a file's bytes follow its header.
MAX_HEADER = 1 << 20
CHUNK = 1 << 16
# stdout and stderr merged, as in the docker runtime's build containers; the
# step first in line for the kernel's OOM killer, before the agent in the same
# task (a step's memory, not the agent, is what a limit is about).
MERGED = ["/bin/sh", "-c", '{ echo 1000 >/proc/self/oom_score_adj; } 2>/dev/null; '
          'exec "$@" 2>&1', "sh"]
AUTH_TIMEOUT = 10.0
EXIT_PORT_TAKEN = 98        # the manager picks another port and starts it again
EXIT_BAD_SETUP = 2

# -- manifests -----------------------------------------------------------------
# path -> (kind, mode, uid, gid, size, mtime_ns, link); kind "d", "f" or "l".
# Sockets, fifos and devices are never part of a build's files.


def stat_entry(path: str):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return _entry(path, st)


def _entry(path: str, st: os.stat_result):
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return ("d", mode, st.st_uid, st.st_gid, 0, 0, "")
    if stat.S_ISREG(st.st_mode):
        return ("f", mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, "")
    if stat.S_ISLNK(st.st_mode):
        return ("l", 0, st.st_uid, st.st_gid, 0, 0, os.readlink(path))
    return None


def manifest(tops, into: dict | None = None) -> dict:
    """The manifest of each directory tree in `tops` (absent ones: nothing),
    symbolic links not followed."""
    out = {} if into is None else into
    for top in tops:
        entry = stat_entry(top)
        if entry is None:
            continue
        out[top] = entry
        if entry[0] == "d":
            _walk(top, out)
    return out


def _walk(directory: str, out: dict) -> None:
    try:
        items = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for item in items:
        try:
            entry = _entry(item.path, item.stat(follow_symlinks=False))
        except FileNotFoundError:
            continue
        if entry is None:
            continue
        out[item.path] = entry
        if entry[0] == "d":
            _walk(item.path, out)


def diff(old: dict, new: dict) -> tuple[list, list]:
    """(changes, deletions) turning `old` into `new`: changes as (op, path),
    op "put" (new, another kind, other contents or link) or "meta" (only the
    mode or owner); deletions deepest first."""
    changes = []
    for path in sorted(new):
        n, o = new[path], old.get(path)
        if o is None or o[0] != n[0] or o[4:] != n[4:]:
            changes.append(("put", path))
        elif o[1:4] != n[1:4]:
            changes.append(("meta", path))
    deletions = sorted((p for p in old if p not in new), reverse=True)
    return changes, deletions


# -- deltas ------------------------------------------------------------------


def write_delta(out, current: dict, changes, deletions) -> dict:
    """Write the records to `out` (a binary file); returns the manifest of
    what was sent (a file's size as sent: it may have changed meanwhile)."""
    sent = {}
    for path in deletions:
        _header(out, {"op": "x", "path": path})
    for op, path in changes:
        kind, mode, uid, gid, size, mtime, link = current[path]
        record = {"op": "m" if op == "meta" else kind, "path": path, "mode": mode,
                  "uid": uid, "gid": gid, "mtime": mtime, "kind": kind}
        if op == "put" and kind == "l":
            record["link"] = link
        if op == "put" and kind == "f":
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue            # gone (or replaced by a link) since the manifest
            try:
                size = os.fstat(fd).st_size
                record["size"] = size
                _header(out, record)
                _copy_out(fd, out, size)
            finally:
                os.close(fd)
        else:
            _header(out, record)
        sent[path] = (kind, mode, uid, gid, record.get("size", size), mtime, link)
    _header(out, {"op": "end"})
    out.flush()
    return sent


def _header(out, record: dict) -> None:
    out.write(json.dumps(record).encode() + b"\n")


def _copy_out(fd: int, out, size: int) -> None:
    left = size
    while left > 0:
        data = os.read(fd, min(CHUNK, left))
        if not data:                # shrunk while read: keep the framing
            out.write(b"\0" * left)
            return
        out.write(data)
        left -= len(data)


def read_header(inp) -> dict:
    line = inp.readline(MAX_HEADER)
    if not line.endswith(b"\n"):
        raise ConnectionError("the connection ended in the middle of a request")
    return json.loads(line)


class Refused(OSError):
    """A record names a path the receiver does not take."""


def apply_delta(inp, roots, *, skip=None, strip_setid: bool = False,
                chown: bool | None = None) -> dict:
    """Apply the records read from `inp` under `roots` (absolute, real
    directories). `skip(path)` true: the record is read and ignored.
    Returns path -> the op applied ("x", "d", "f", "l", "m"). Raises Refused
    at the first record outside the roots or under a link (the rest of the
    stream is then unread: the connection is dropped), OSError for what the
    file system refused."""
    chown = (os.geteuid() == 0) if chown is None else chown
    done: dict = {}
    modes: list = []             # directories' modes, set last (deepest first)
    while True:
        record = read_header(inp)
        op = record.get("op")
        if op == "end":
            break
        path = record.get("path")
        root = _root_of(path, roots)
        size = int(record.get("size") or 0) if op == "f" else 0
        if skip is not None and skip(path):
            _discard(inp, size)
            continue
        _check_parents(path, root)
        if op == "x":
            if path != root and os.path.lexists(path):
                _remove(path)
        elif op == "d":
            if not _is_real_dir(path):
                if path == root:
                    raise Refused(f"{root} is not a directory")
                if os.path.lexists(path):
                    _remove(path)
                os.mkdir(path, 0o700)
            _own(path, record, chown)
            modes.append((path, record["mode"]))
        elif op == "f":
            if path == root:
                raise Refused(f"{root} is a root")
            if os.path.lexists(path):
                _remove(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                _copy_in(inp, fd, size)
                if chown:
                    _chown(lambda: os.fchown(fd, record["uid"], record["gid"]))
                mode = record["mode"]
                os.fchmod(fd, mode & ~0o6000 if strip_setid else mode)
            finally:
                os.close(fd)
            os.utime(path, ns=(record["mtime"], record["mtime"]), follow_symlinks=False)
        elif op == "l":
            if path == root:
                raise Refused(f"{root} is a root")
            if os.path.lexists(path):
                _remove(path)
            os.symlink(record["link"], path)
            _own(path, record, chown)
        elif op == "m":
            have = stat_entry(path)
            if have is None or have[0] != record.get("kind"):
                continue             # the put it follows was skipped or refused
            _own(path, record, chown)
            if have[0] == "d":
                modes.append((path, record["mode"]))
            elif have[0] == "f":
                mode = record["mode"]
                os.chmod(path, mode & ~0o6000 if strip_setid else mode, follow_symlinks=False)
        else:
            raise Refused(f"unknown record {op!r}")
        done[path] = op
    for path, mode in sorted(modes, reverse=True):
        if _is_real_dir(path):
            os.chmod(path, mode, follow_symlinks=False)
    return done


def _root_of(path, roots) -> str:
    if not isinstance(path, str) or not path.startswith("/") or os.path.normpath(path) != path \
            or "\0" in path:
        raise Refused(f"not a clean absolute path: {path!r}")
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    raise Refused(f"{path} is outside {', '.join(roots)}")


def _check_parents(path: str, root: str) -> None:
    """Every directory from the root down to the path's parent is a real one
    (never a link a step left), so nothing is written elsewhere."""
    if path == root:
        return
    parts = os.path.relpath(os.path.dirname(path), root).split("/")
    current = root
    for part in [""] + ([] if parts == ["."] else parts):
        current = os.path.join(current, part) if part else current
        if not _is_real_dir(current):
            raise Refused(f"{current} is not a directory (a link, a file or nothing): "
                          f"{path} not written")


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _remove(path: str) -> None:
    if _is_real_dir(path):
        # A sealed tree (no write bits) is removed by whoever may: make it writable first.
        for top, dirs, _ in os.walk(path):
            for d in dirs:
                _writable(os.path.join(top, d))
        _writable(path)
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _writable(path: str) -> None:
    try:
        if not os.path.islink(path):
            os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | 0o700)
    except OSError:
        pass


def _own(path: str, record: dict, chown: bool) -> None:
    if chown:
        _chown(lambda: os.chown(path, record["uid"], record["gid"], follow_symlinks=False))


def _chown(call) -> None:
    try:
        call()
    except PermissionError:
        pass                    # not root: the files stay the receiver's


def _copy_in(inp, fd: int, size: int) -> None:
    left = size
    while left > 0:
        data = inp.read(min(CHUNK, left))
        if not data:
            raise ConnectionError("the connection ended in the middle of a file")
        os.write(fd, data)
        left -= len(data)


def _discard(inp, size: int) -> None:
    while size > 0:
        data = inp.read(min(CHUNK, size))
        if not data:
            raise ConnectionError("the connection ended in the middle of a file")
        size -= len(data)


# -- the agent -----------------------------------------------------------------


def oom_kills() -> int:
    """How many processes of this task the kernel killed for its memory limit
    (its cgroup's count: v2, or v1's memory controller)."""
    for name in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(name) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit():
                        return int(value)
        except OSError:
            continue
    return 0


class Agent:
    def __init__(self, token: bytes, roots, user, idle: float, inputs=()):
        self.token = token
        self.roots = [os.path.normpath(r) for r in roots]
        # Where the manager's read-only files go (put, never sent back).
        self.inputs = [os.path.normpath(r) for r in inputs]
        self.user = user                    # (uid, gid) of the steps, or None
        self.idle = idle
        self.state: dict = {}               # the manifest at the last sync
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.done = threading.Event()

    # One request per connection.
    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(AUTH_TIMEOUT)
        inp, out = conn.makefile("rb"), conn.makefile("wb")
        try:
            try:
                request = read_header(inp)
            except (OSError, ValueError):
                return
            token = request.get("token") if isinstance(request, dict) else None
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token):
                _reply(out, {"error": "refused: no valid token"})
                return
            conn.settimeout(None)
            with self.lock:
                self.last = time.monotonic()
                self._handle(request, conn, inp, out)
                self.last = time.monotonic()
        except (OSError, ValueError) as e:
            try:
                _reply(out, {"error": f"{type(e).__name__}: {e}"})
            except OSError:
                pass
        finally:
            for f in (inp, out):
                try:
                    f.close()
                except OSError:
                    pass
            conn.close()

    def _handle(self, request: dict, conn, inp, out) -> None:
        op = request.get("op")
        if op == "hello":
            _reply(out, {"ok": True, "hostname": socket.gethostname()})
        elif op == "put":
            try:
                apply_delta(inp, self.roots + self.inputs)
            finally:
                self.state = manifest(self.roots)
            _reply(out, {"ok": True})
        elif op == "get":
            current = manifest(self.roots)
            changes, deletions = diff(self.state, current)
            _reply(out, {"ok": True, "changes": len(changes), "deletions": len(deletions)})
            self.state = {**current, **write_delta(out, current, changes, deletions)}
        elif op == "run":
            self._run(request, conn, out)
        elif op == "bye":
            _reply(out, {"ok": True})
            self.done.set()
        else:
            _reply(out, {"error": f"unknown request {op!r}"})

    def _run(self, request: dict, conn, out) -> None:
        argv = [str(a) for a in request["argv"]]
        timeout = float(request.get("timeout") or 3600)
        before = oom_kills()
        ids = {}
        if self.user is not None and os.geteuid() == 0:
            ids = {"user": self.user[0], "group": self.user[1], "extra_groups": []}
        try:
            proc = subprocess.Popen(MERGED + argv, cwd=request.get("cwd") or "/",
                                    env={str(k): str(v) for k, v in request.get("env", {}).items()},
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, **ids)
        except OSError as e:
            _reply(out, {"error": f"{argv[0]}: {e.strerror or e}", "errno": e.errno or 0})
            return
        deadline = time.monotonic() + timeout
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ, "step")
        selector.register(conn, selectors.EVENT_READ, "manager")
        pending = b""
        timed_out = gone = False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                events = selector.select(min(left, 1.0))
                stop = False
                for key, _ in events:
                    if key.data == "manager":
                        if not conn.recv(1, socket.MSG_PEEK):
                            gone = stop = True
                        else:
                            selector.unregister(conn)
                        continue
                    data = os.read(proc.stdout.fileno(), CHUNK)
                    if not data:
                        stop = True
                        break
                    lines = (pending + data).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        _reply(out, {"line": line.decode("utf-8", "replace")}, flush=False)
                    out.flush()
                if stop:
                    break
        except OSError:
            gone = True
        finally:
            selector.close()
        if timed_out or gone:
            self._kill_steps(proc)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill_steps(proc)
            code = proc.wait()
        self._kill_group(proc)
        if gone:
            return
        if pending:
            _reply(out, {"line": pending.decode("utf-8", "replace")}, flush=False)
        if timed_out:
            _reply(out, {"timeout": True})
            return
        _reply(out, {"exit": code, "oom_kills": oom_kills() - before})

    def _kill_group(self, proc) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def _kill_steps(self, proc) -> None:
        """The step's session, and every other process of the steps' uid in
        this task (what left the session): nothing of it runs on."""
        self._kill_group(proc)
        if self.user is None:
            return
        me = os.getpid()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == me:
                continue
            try:
                if os.stat(f"/proc/{pid}").st_uid == self.user[0]:
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def _reply(out, record: dict, flush: bool = True) -> None:
    out.write(json.dumps(record).encode() + b"\n")
    if flush:
        out.flush()


def main() -> int:
    env = os.environ
    try:
        with open(env["DOTCLOUD_AGENT_TOKEN_FILE"], "rb") as f:
            token = f.read().strip()
        roots = json.loads(env["DOTCLOUD_AGENT_ROOTS"])
        user = tuple(int(x) for x in env["DOTCLOUD_AGENT_USER"].split(":")) \
            if env.get("DOTCLOUD_AGENT_USER") else None
        addr, port = env["DOTCLOUD_AGENT_ADDR"], int(env["DOTCLOUD_AGENT_PORT"])
        idle = float(env.get("DOTCLOUD_AGENT_IDLE", "3600"))
        inputs = json.loads(env.get("DOTCLOUD_AGENT_INPUTS") or "[]")
    except (KeyError, ValueError, OSError) as e:
        print(f"build agent: bad setup: {e}", file=sys.stderr)
        return EXIT_BAD_SETUP
    if len(token) < 16:
        print("build agent: no token", file=sys.stderr)
        return EXIT_BAD_SETUP
    agent = Agent(token, roots, user, idle, inputs)
    server = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((addr, port))
    except OSError as e:
        print(f"build agent: cannot listen on {addr}:{port}: {e}", file=sys.stderr)
        return EXIT_PORT_TAKEN if e.errno == errno.EADDRINUSE else EXIT_BAD_SETUP
    server.listen(16)
    server.settimeout(1.0)
    print(f"build agent: listening on {addr}:{port}", file=sys.stderr, flush=True)
    while not agent.done.is_set():
        # A manager gone for good (killed daemon) leaves no agent running forever.
        if time.monotonic() - agent.last > agent.idle and not agent.lock.locked():
            print("build agent: idle, exiting", file=sys.stderr)
            return 0
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        threading.Thread(target=agent.serve, args=(conn,), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
