"""Server-side cost of creating and deleting many refs in one push.

Runs the real receive-pack (gitserver.git.serve) in process on a fresh data
directory, fed the pkt-lines a client sends for N creates, then N deletes,
and prints seconds per ref for each and their ratio. The git client's own
time is left out: `git push` spends seconds matching thousands of delete
refspecs on its side, whatever the server does.

Run:  python bench/refs_bench.py [--refs N]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dulwich.objects import Commit, Tree  # noqa: E402
from dulwich.repo import Repo  # noqa: E402

from dotcloud import logs  # noqa: E402
from dotcloud.settings import load  # noqa: E402
from dotcloud.state import Store  # noqa: E402
from gitserver import git  # noqa: E402

ZERO = b"0" * 40
EMPTY_PACK = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00"
EMPTY_PACK += hashlib.sha1(EMPTY_PACK).digest()


class Channel:
    def __init__(self, data: bytes):
        self._in, self.out, self.max_bytes = io.BytesIO(data), io.BytesIO(), None

    def read(self, n: int = -1) -> bytes:
        return self._in.read(n)

    def write(self, data: bytes) -> None:
        self.out.write(data)


def pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def request(n: int, old: bytes, new: bytes) -> bytes:
    lines = []
    for i in range(n):
        line = old + b" " + new + b" refs/heads/b%d" % i
        lines.append(pkt(line + (b"\0report-status delete-refs" if i == 0 else b"") + b"\n"))
    return b"".join(lines) + b"0000"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refs", type=int, default=2000)
    args = ap.parse_args()
    logs.configure(stream=io.StringIO())
    settings = load(Path(tempfile.mkdtemp(prefix="refs-bench-")))
    store = Store(settings.paths.db)
    store.add_user("bench")
    store.create_app("refs", "bench")
    git.serve(settings, store, "bench", "git-upload-pack", "refs", Channel(b"0000"))
    repo = Repo(str(git.repo_path(settings, "refs")))
    tree = Tree()
    repo.object_store.add_object(tree)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"b <b@b>"
    commit.commit_time = commit.author_time = commit.commit_timezone = commit.author_timezone = 0
    commit.message = b"bench"
    repo.object_store.add_object(commit)
    times = {}
    for name, data in (("create", request(args.refs, ZERO, commit.id) + EMPTY_PACK),
                       ("delete", request(args.refs, commit.id, ZERO))):
        channel = Channel(data)
        started = time.perf_counter()
        git.serve(settings, store, "bench", "git-receive-pack", "refs", channel)
        times[name] = time.perf_counter() - started
        done = channel.out.getvalue().count(b"ok refs/heads/")
        assert done == args.refs, f"{name}: {done} of {args.refs} refs ok"
        print(f"{name:6} {args.refs} refs: {times[name]:.2f} s, "
              f"{times[name] / args.refs * 1000:.2f} ms per ref")
    print(f"delete/create per ref: {times['delete'] / times['create']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
