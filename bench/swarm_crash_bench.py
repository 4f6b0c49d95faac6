"""A crash at boot on the swarm runtime: how long a push of a release whose
app crashes (`import missing_module`) takes to be refused, and how long the
shim takes to learn of the crash, on the 3-node test swarm.

    python bench/swarm_crash_bench.py [--pushes 3]

Needs the cluster of tests/swarm/swarm.sh up (`tests/swarm/swarm.sh up`);
it does not bring it up or down. A platform in the manager's network
namespace gets a working app (one instance), then the broken releases. From
the instance log: the launcher's `[swarm] its task on nX exited` line and
the app's last line, each to the shim's `exited status=` line. It prints its
figures; nothing here is asserted.
"""
import argparse
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "swarm"))
from platform_helpers import git_repo  # noqa: E402
from swarmkit import Cluster, node_app, swarm_platform  # noqa: E402

STAMP = re.compile(r"^(\S+Z) \S+: (.*)$")


def stamp(line: str) -> tuple[float, str] | None:
    m = STAMP.match(line)
    if m is None:
        return None
    return datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp(), m.group(2)


def crashes(log: Path) -> list[tuple[float, float]]:
    """(seen by the launcher, last app line) -> the shim's line, per crash, in seconds."""
    out, seen, last = [], None, None
    for line in log.read_text().splitlines():
        got = stamp(line)
        if got is None:
            continue
        t, text = got
        if text.startswith("[swarm] its task on "):
            seen = t
        elif text.startswith("[dotcloud] exited status="):
            if seen is not None and last is not None:
                out.append((t - seen, t - last))
            seen = last = None
        elif not text.startswith(("[swarm]", "[dotcloud]")):
            last = t
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=3)
    args = ap.parse_args()
    c = Cluster.read()
    root = Path(tempfile.mkdtemp(prefix="dotcloud-bench-crash-"))
    p = swarm_platform(root, c.docker_host, c.registry)
    p.start("--runtime", "swarm")
    took = []
    try:
        p.add_user("alice", admin=True)
        repo = root / "app"
        git_repo(repo, node_app("v1", instances=1))
        r = p.push("alice", repo, "crash")
        if r.code != 0:
            raise SystemExit(f"push failed:\n{r.text}")
        for k in range(args.pushes):
            git_repo(repo, dict(node_app("v1", instances=1),
                                **{"wsgi.py": f"# {k}\nimport missing_module\n"}), f"broken {k}")
            t0 = time.monotonic()
            r = p.push("alice", repo, "crash")
            took.append(time.monotonic() - t0)
            if r.code == 0 or "ModuleNotFoundError" not in r.err:
                raise SystemExit(f"the broken push was not refused with its error:\n{r.text}")
        seen = [x for log in sorted((p.data / "logs" / "crash").glob("*.log"))
                for x in crashes(log)]
    finally:
        p.stop()
        c.remove_services(p.data)
        c.close()
    print("refused push, total: " + ", ".join(f"{t:.2f} s" for t in took))
    print("crash seen -> shim's line: " + ", ".join(f"{a:.3f} s" for a, _ in seen))
    print("app's last line -> shim's line: " + ", ".join(f"{b:.3f} s" for _, b in seen))


if __name__ == "__main__":
    main()
