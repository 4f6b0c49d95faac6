"""Push-to-live on the swarm runtime (issue 15): the same app pushed to a
platform driving a one-node swarm (a lone engine it initialises, no
registry) and to one driving the 3-node test swarm (release images pushed
to its registry and pulled by the nodes), from `git push` to the new
version served, with the server's phases.

    python bench/swarm_push_bench.py [--pushes 5] [--instances 1] [--modes 1,3]

Brings up tests/swarm/swarm.sh's cluster (and its lone engine) when they are
not up, and leaves them as it found them. Each platform runs in its
manager's network namespace, as the tests do. The first push is a clean
build; the next ones change only the code. It prints its figures; nothing
here is asserted.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "swarm"))
from platform_helpers import git_repo  # noqa: E402
from push_bench import phases  # noqa: E402
from swarmkit import ROOT, SCRIPT, SOLO, Cluster, node_app, swarm_platform  # noqa: E402


def timed_push(p, repo: Path, app: str, version: str, instances: int) -> tuple[float, dict]:
    git_repo(repo, node_app(version, instances), version)
    t0 = time.monotonic()
    r = p.push("alice", repo, app)
    if r.code != 0:
        raise SystemExit(f"push failed:\n{r.text}")
    while not p.get(f"{app}.localhost")[1].startswith(f"{version} "):
        time.sleep(0.01)
    return time.monotonic() - t0, phases(r.err)


def run(nodes: int, pushes: int, instances: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"dotcloud-bench-swarm{nodes}-"))
    if nodes == 1:
        p = swarm_platform(root, f"unix://{ROOT}/solo/docker.sock", address=SOLO,
                           netns="swn-solo")
    else:
        c = Cluster.read()
        p = swarm_platform(root, c.docker_host, c.registry)
    p.start("--runtime", "swarm")
    try:
        p.add_user("alice", admin=True)
        repo = root / "app"
        first = timed_push(p, repo, "bench", "v0", instances)
        rows = [timed_push(p, repo, "bench", f"v{i}", instances) for i in range(1, pushes + 1)]
    finally:
        p.stop()
    phase = {k: statistics.median(r[1].get(k, 0) for r in rows) for k in rows[0][1]}
    return {"first": first[0], "live": statistics.median(r[0] for r in rows),
            "max": max(r[0] for r in rows), "phases": phase}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--modes", default="1,3", help="swarms to measure, by node count")
    args = ap.parse_args()
    was_up = subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0
    solo_was_up = (ROOT / "solo" / "docker.sock").exists()
    subprocess.run([SCRIPT, "up"], check=True)
    try:
        for mode in (int(m) for m in args.modes.split(",")):
            if mode == 1:
                subprocess.run([SCRIPT, "solo-down"], check=True)   # a lone engine, in no swarm
                subprocess.run([SCRIPT, "solo"], check=True)
            r = run(mode, args.pushes, args.instances)
            print(f"swarm of {mode} node(s), {args.instances} instance(s): first push "
                  f"{r['first']:.2f}s to live; new code ({args.pushes} pushes): median "
                  f"{r['live']:.2f}s, max {r['max']:.2f}s")
            print("    " + ", ".join(f"{k} {v:.3f}s" for k, v in r["phases"].items()))
    finally:
        if not solo_was_up:
            subprocess.run([SCRIPT, "solo-down"])
        if not was_up:
            subprocess.run([SCRIPT, "down"])


if __name__ == "__main__":
    main()
