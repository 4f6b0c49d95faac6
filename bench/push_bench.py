"""Push-to-live benchmark (issue 3): how long from `git push` to the new
version serving, split by phase, and how many requests fail across 20
deploys under continuous load.

    python bench/push_bench.py [--deploys 20] [--clients 6]

Starts its own platform on free ports in a temporary directory, with the real
git and OpenSSH clients, and prints its figures; nothing here is asserted.
"""
import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from loadgen import Load  # noqa: E402
from platform_helpers import Platform, git_repo, python_app  # noqa: E402

TIMING = re.compile(r"\((receive .*total [\d.]+s)\)")


def phases(stderr: str) -> dict[str, float]:
    m = TIMING.search(stderr)
    if not m:
        return {}
    return {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)s", m.group(1))}


def timed_push(p: Platform, repo: Path, app: str, body: str) -> tuple[float, float, dict]:
    """Return (push seconds, push start -> new version served, server phases)."""
    git_repo(repo, python_app(body), body)
    t0 = time.monotonic()
    r = p.push("alice", repo, app)
    pushed = time.monotonic() - t0
    if r.code != 0:
        raise SystemExit(f"push failed:\n{r.text}")
    while p.get(f"{app}.localhost")[1] != body:
        time.sleep(0.01)
    return pushed, time.monotonic() - t0, phases(r.err)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deploys", type=int, default=20)
    ap.add_argument("--clients", type=int, default=6)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dotcloud-bench-"))
    p = Platform(data=root / "data", home=root)
    p.start()
    try:
        p.add_user("alice", admin=True)
        repo = root / "app"
        first = timed_push(p, repo, "bench", "v0")
        print(f"first push (clean build, venv created): {first[0]:.2f}s push, "
              f"{first[1]:.2f}s to live")
        rows = [timed_push(p, repo, "bench", f"v{i}") for i in range(1, 6)]
        print("\nunchanged requirements, new code (5 pushes, no load):")
        print(f"  push: median {statistics.median(r[0] for r in rows):.2f}s, "
              f"max {max(r[0] for r in rows):.2f}s; to live: median "
              f"{statistics.median(r[1] for r in rows):.2f}s")
        keys = [k for k in rows[0][2]]
        for k in keys:
            print(f"    {k:<8} median {statistics.median(r[2].get(k, 0) for r in rows):.3f}s")
        print(f"    (the rest of the push time is ssh + git + pipeline start-up)")

        print(f"\n{args.deploys} deploys under load ({args.clients} clients, half keep-alive):")
        times = []
        with Load(p.http_port, "bench.localhost", clients=args.clients) as load:
            for i in range(args.deploys):
                times.append(timed_push(p, repo, "bench", f"load-{i}")[0])
        print(f"  requests: {load.ok + load.failures}, failed: {load.failures}")
        print(f"  push under load: median {statistics.median(times):.2f}s, max {max(times):.2f}s")
    finally:
        p.stop()


if __name__ == "__main__":
    main()
