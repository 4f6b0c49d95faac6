"""Push-to-live on each runtime (issue 15): the same app pushed to a platform
on the process runtime and to one on the docker runtime, from `git push` to
the new version served, with the server's phases.

    python bench/runtime_push_bench.py [--pushes 9] [--runtimes process,docker]

Each runtime gets its own platform on free ports in a temporary directory
(the docker one needs a running engine with the base images of
tests/docker/images.sh), all running at once. The first push is a clean
build; the next ones change only the code, as most pushes do, one runtime
after the other in each round, so a busy machine slows every runtime of a
round alike: the ratio is taken within each round, and its median printed.
It prints its figures; nothing here is asserted. Its data directories and
images are removed at the end.
"""
import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from platform_helpers import Platform  # noqa: E402
from push_bench import timed_push  # noqa: E402

from runtime import docker_engine, docker_image  # noqa: E402

APP = "bench"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=9)
    ap.add_argument("--runtimes", default="process,docker")
    args = ap.parse_args()
    runtimes = args.runtimes.split(",")
    platforms, roots = {}, []
    try:
        for runtime in runtimes:
            root = Path(tempfile.mkdtemp(prefix=f"dotcloud-bench-{runtime}-"))
            roots.append(root)
            p = platforms[runtime] = Platform(data=root / "data", home=root)
            p.start("--runtime", runtime)
            p.add_user("alice", admin=True)
        rows: dict[str, list] = {r: [] for r in runtimes}
        for runtime, p in platforms.items():
            first = timed_push(p, p.data.parent / "app", APP, "v0")
            print(f"{runtime}: first push (clean build) {first[1]:.2f}s to live")
        for i in range(1, args.pushes + 1):
            for runtime, p in platforms.items():
                rows[runtime].append(timed_push(p, p.data.parent / "app", APP, f"v{i}"))
        print(f"\nnew code, unchanged requirements ({args.pushes} rounds):")
        for runtime, r in rows.items():
            live = [row[1] for row in r]
            phases = {k: statistics.median(row[2].get(k, 0) for row in r) for k in r[0][2]}
            print(f"  {runtime:<8} to live: median {statistics.median(live):.2f}s, "
                  f"min {min(live):.2f}s, max {max(live):.2f}s")
            print("           " + ", ".join(f"{k} {v:.3f}s" for k, v in phases.items()))
        base = rows.get("process")
        for runtime, r in rows.items():
            if base is not None and runtime != "process":
                ratios = [a[1] / b[1] for a, b in zip(r, base)]
                print(f"  {runtime} / process, within each round: median "
                      f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, "
                      f"max {max(ratios):.2f}x)")
    finally:
        for runtime, p in platforms.items():
            p.stop()
            if runtime != "process":
                docker_image.prune(docker_engine.connect(), p.data, APP, keep=set())
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
