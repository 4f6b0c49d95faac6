"""The build agent's file sync (runtime.build_agent) without a swarm: manifests,
deltas and what a receiver refuses (paths outside its roots, links a step
left); and the whole protocol with runtime.build_nodes' manager side, the
agent in a mount namespace of its own where the same paths hold its copy."""
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime import build_agent, build_nodes
from runtime.build_agent import Refused, apply_delta, diff, manifest, write_delta

AGENT = Path(build_agent.__file__)


def delta(old: dict, tops) -> tuple[bytes, dict]:
    current = manifest([str(t) for t in tops])
    changes, deletions = diff(old, current)
    out = io.BytesIO()
    write_delta(out, current, changes, deletions)
    return out.getvalue(), current


def records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.split(b"\n") if line.startswith(b"{")]


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_symlink() and os.readlink(p))
            or (p.is_file() and p.read_bytes()) or "dir"
            for p in sorted(root.rglob("*"))}


def test_a_delta_rebuilds_a_tree_where_it_was(tmp_path):
    root = tmp_path / "release"
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "lib" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "current").symlink_to("lib/pkg")
    data, sent = delta({}, [root])
    before = tree(root)
    moved = tmp_path / "moved"
    root.rename(moved)
    root.mkdir()
    done = apply_delta(io.BytesIO(data), [str(root)])
    assert tree(root) == before
    assert (root / "run.sh").stat().st_mode & 0o777 == 0o755
    assert os.stat(root / "lib/pkg/mod.py").st_mtime_ns == os.stat(moved / "lib/pkg/mod.py").st_mtime_ns
    assert len(done) == 6     # the root's own mode and owner too
    # Nothing changed: nothing to send.
    assert diff(manifest([str(root)]), manifest([str(root)])) == ([], [])


def test_only_what_changed_is_sent_and_removals_are_deletions(tmp_path):
    root = tmp_path / "release"
    (root / "a").mkdir(parents=True)
    for i in range(50):
        (root / "a" / f"f{i}").write_text(f"{i}\n")
    (root / "gone").mkdir()
    (root / "gone" / "x").write_text("x")
    _, state = delta({}, [root])
    (root / "a" / "f3").write_text("three\n")
    (root / "a" / "new").write_text("new\n")
    shutil.rmtree(root / "gone")
    (root / "a" / "f4").chmod(0o600)
    data, _ = delta(state, [root])
    got = [(r["op"], r.get("path", "").removeprefix(str(root))) for r in records(data)]
    # Deletions first, children before their directory; then changes in path order.
    assert got == [("x", "/gone/x"), ("x", "/gone"), ("f", "/a/f3"), ("m", "/a/f4"),
                   ("f", "/a/new"), ("end", "")]


def record(op: str, path, **fields) -> bytes:
    base = {"op": op, "path": str(path), "mode": 0o644, "uid": os.getuid(), "gid": os.getgid(),
            "mtime": time.time_ns(), "kind": op}
    base.update(fields)
    return json.dumps(base).encode() + b"\n"


END = b'{"op": "end"}\n'


def test_nothing_is_written_outside_the_roots(tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    for path in (tmp_path / "elsewhere", f"{root}/../elsewhere", "relative/x", f"{root}/./x"):
        with pytest.raises(Refused):
            apply_delta(io.BytesIO(record("f", path, size=0) + END), [str(root)])
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(Refused):     # a root is never replaced
        apply_delta(io.BytesIO(record("l", root, link="/") + END), [str(root)])
    assert root.is_dir() and not root.is_symlink()


def test_nothing_is_written_through_a_link_a_step_left(tmp_path):
    root, outside = tmp_path / "release", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("keep\n")
    (root / "dir").symlink_to(outside)
    (root / "file").symlink_to(outside / "secret")
    # Into a linked directory: refused, nothing written there.
    with pytest.raises(Refused):
        apply_delta(io.BytesIO(record("f", root / "dir" / "x", size=2) + b"x\n" + END),
                    [str(root)])
    with pytest.raises(Refused):
        apply_delta(io.BytesIO(record("x", root / "dir" / "secret") + END), [str(root)])
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    # Over a link: the link is replaced, what it pointed to is untouched.
    apply_delta(io.BytesIO(record("f", root / "file", size=4) + b"new\n" + record("d", root / "dir")
                           + record("f", root / "dir" / "x", size=2) + b"x\n" + END),
                [str(root)])
    assert (outside / "secret").read_text() == "keep\n"
    assert not (root / "file").is_symlink() and (root / "file").read_text() == "new\n"
    assert not (root / "dir").is_symlink() and (root / "dir" / "x").read_text() == "x\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    # A metadata change never follows a link either.
    (root / "link2").symlink_to(outside / "secret")
    apply_delta(io.BytesIO(record("m", root / "link2", kind="f", mode=0o777) + END), [str(root)])
    assert (outside / "secret").stat().st_mode & 0o777 != 0o777


def test_setid_bits_are_dropped_on_the_way_back(tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    apply_delta(io.BytesIO(record("f", root / "tool", size=0, mode=0o4755) + END), [str(root)],
                strip_setid=True)
    assert (root / "tool").stat().st_mode & 0o7777 == 0o755


def test_skipped_records_are_read_and_left(tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    data = record("f", root / "a", size=3) + b"abc" + record("f", root / "b", size=1) + b"b" + END
    done = apply_delta(io.BytesIO(data), [str(root)], skip=lambda p: p.endswith("/a"))
    assert list(done) == [str(root / "b")] and not (root / "a").exists()


# -- the whole protocol: the agent in its own mount namespace ----------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="the agent's own copy needs a mount namespace (root)")


@pytest.fixture
def agent(tmp_path):
    """An agent on 127.0.0.1 whose release and cache directories are tmpfs of
    its own (as a task's volumes), and the manager side talking to it."""
    release, cache = tmp_path / "release", tmp_path / "cache"
    release.mkdir()
    cache.mkdir()
    token = tmp_path / "token"
    token.write_text("t" * 32)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DOTCLOUD_AGENT_TOKEN_FILE": str(token),
           "DOTCLOUD_AGENT_ROOTS": json.dumps([str(release), str(cache)]),
           "DOTCLOUD_AGENT_USER": "", "DOTCLOUD_AGENT_ADDR": "127.0.0.1",
           "DOTCLOUD_AGENT_PORT": str(port)}
    script = (f"mount -t tmpfs tmpfs {release} && mount -t tmpfs tmpfs {cache}"
              f" && exec {sys.executable} {AGENT}")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            env=env, stderr=subprocess.PIPE)
    node = build_nodes.swarm.Node("id", "here", "127.0.0.1", "worker", "ready", "active", {})
    executor = build_nodes.AgentExecutor(None, node, data=tmp_path, name="t", image="i",
                                         image_id="sha256:x", user="0:0", labels={},
                                         limits=None, release=release, cache=cache)
    executor.token, executor.port, executor.service = "t" * 32, port, "running"
    for _ in range(100):
        try:
            executor._call({"op": "hello"}, timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    yield executor
    proc.kill()
    proc.wait()


def run(executor, script: str, env=None) -> list[str]:
    lines: list[str] = []
    code = executor.run(["sh", "-c", script], cwd=Path("/"), env=env or {}, timeout=30,
                        on_line=lines.append)
    assert code == 0, lines
    return lines


@needs_root
def test_the_agent_refuses_requests_without_the_token(agent):
    for request in ({"op": "hello"}, {"op": "get", "token": "x" * 32}):
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as conn:
            conn.sendall(json.dumps(request).encode() + b"\n")
            assert json.loads(conn.makefile("rb").readline()) == \
                {"error": "refused: no valid token"}


@needs_root
def test_steps_get_the_release_and_the_cache_entries_they_use(agent, monkeypatch):
    release, cache = Path(agent.release), Path(agent.cache)
    (release / "app.py").write_text("print('hi')\n")
    used, unused = cache / "python" / "used", cache / "python" / "unused"
    used.mkdir(parents=True)
    unused.mkdir()
    (used / "lib").write_text("lib\n")
    (unused / "big").write_text("big\n")
    (cache / ".python.lock").write_text("")
    sent: list[int] = []
    real = build_agent.write_delta
    monkeypatch.setattr(build_agent, "write_delta",
                        lambda out, cur, ch, de: sent.append(len(ch) + len(de)) or real(out, cur, ch, de))
    # The agent's own copy: its tmpfs, filled by the sync only.
    assert run(agent, f"cat {release}/app.py {used}/lib; ls $(dirname $VIRTUAL_ENV)",
               env={"VIRTUAL_ENV": str(used)}) == ["print('hi')", "lib", "used"]
    first = sent[-1]
    # The next step: only what changed goes.
    (release / "app.py").write_text("print('hello')\n")
    assert run(agent, f"cat {release}/app.py") == ["print('hello')"]
    assert sent[-1] == 1
    assert first > 3
    # What the step did comes back; what it removed is removed here, and only that.
    (cache / "python" / "other-build").mkdir()
    run(agent, f"echo built > {release}/out; rm {release}/app.py; mkdir {used}/bin;"
               f" ln -s /etc {release}/etc-link")
    assert (release / "out").read_text() == "built\n" and not (release / "app.py").exists()
    assert (used / "bin").is_dir() and os.readlink(release / "etc-link") == "/etc"
    assert (cache / "python" / "other-build").is_dir() and (unused / "big").exists()
    # A link the step left is not followed by the next sync, either way.
    (release / "etc-link").unlink()
    (release / "etc-link").mkdir()
    (release / "etc-link" / "passwd").write_text("mine\n")
    assert run(agent, f"cat {release}/etc-link/passwd") == ["mine"]


@needs_root
def test_a_complete_cache_entry_is_never_changed_from_a_build_node(agent):
    cache = Path(agent.cache)
    entry = cache / "python" / "done"
    entry.mkdir(parents=True)
    (entry / "bin").write_text("good\n")
    (entry / ".complete").write_text("")
    run(agent, f"echo evil > {entry}/bin; echo extra > {entry}/new")
    assert (entry / "bin").read_text() == "good\n" and not (entry / "new").exists()
    # ...and the agent gets the manager's copy back at the next step.
    assert run(agent, f"cat {entry}/bin") == ["good"]


@needs_root
def test_a_step_that_cannot_start_or_outlives_its_deadline(agent):
    with pytest.raises(OSError):
        agent.run(["true"], cwd=Path("/no/such/dir"), env={}, timeout=10, on_line=print)
    with pytest.raises(TimeoutError):
        agent.run(["sleep", "30"], cwd=Path("/"), env={}, timeout=1, on_line=print)
    lines: list[str] = []
    assert agent.run(["sh", "-c", "echo out; echo err >&2; exit 4"], cwd=Path("/"), env={},
                     timeout=10, on_line=lines.append) == 4
    assert lines == ["out", "err"]
    assert agent.run(["no-such-program"], cwd=Path("/"), env={"PATH": "/usr/bin:/bin"},
                     timeout=10, on_line=lines.append) == 127


@needs_root
def test_a_step_goes_before_the_agent_when_memory_runs_out(agent):
    assert run(agent, "cat /proc/self/oom_score_adj") == ["1000"]
