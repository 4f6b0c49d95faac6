"""Push-to-live on each runtime (issue 15): the same app pushed to a platform
on the process runtime and to one on the docker runtime, from `git push` to
the new version served, with the server's phases.

    python bench/runtime_push_bench.py [--pushes 5] [--runtimes process,docker]

Each runtime gets its own platform on free ports in a temporary directory
(the docker one needs a running engine with the base images of
tests/docker/images.sh). The first push is a clean build; the next ones
change only the code, as most pushes do. It prints its figures; nothing here
is asserted.
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from platform_helpers import Platform  # noqa: E402
from push_bench import timed_push  # noqa: E402


def run(runtime: str, pushes: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"dotcloud-bench-{runtime}-"))
    p = Platform(data=root / "data", home=root)
    p.start("--runtime", runtime)
    try:
        p.add_user("alice", admin=True)
        repo = root / "app"
        first = timed_push(p, repo, "bench", "v0")
        rows = [timed_push(p, repo, "bench", f"v{i}") for i in range(1, pushes + 1)]
    finally:
        p.stop()
    phases = {k: statistics.median(r[2].get(k, 0) for r in rows) for k in rows[0][2]}
    return {"first": first[1], "live": statistics.median(r[1] for r in rows),
            "max": max(r[1] for r in rows), "phases": phases}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--runtimes", default="process,docker")
    args = ap.parse_args()
    results = {}
    for runtime in args.runtimes.split(","):
        results[runtime] = r = run(runtime, args.pushes)
        print(f"{runtime}: first push {r['first']:.2f}s to live; new code "
              f"({args.pushes} pushes): median {r['live']:.2f}s, max {r['max']:.2f}s")
        print("    " + ", ".join(f"{k} {v:.3f}s" for k, v in r["phases"].items()))
    if "process" in results:
        for runtime, r in results.items():
            if runtime != "process":
                print(f"{runtime} / process: {r['live'] / results['process']['live']:.2f}x")


if __name__ == "__main__":
    main()
