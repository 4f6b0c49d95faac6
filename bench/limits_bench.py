"""What cgroup limits cost (issue 16): instance start and push-to-live, with each
instance, build step and hook in a cgroup of its own, and without.

    sudo python bench/limits_bench.py [--starts 30] [--pushes 7] [--rounds 3]

Needs root and mounted cgroups (v1 controllers, or v2). Two parts:

- shim start: a shim started the way the runtime starts one (shimctl.spawn)
  running `sleep`, timed from the spawn to the shim's status file naming the
  process's pid; with a `cgroup` in its spec (the group made, limits written,
  the child joining it before exec) and without. Then the stop, timed to the
  shim's exit (with a cgroup: the group killed and removed too).
- push to live: one platform per mode on free ports with the real git and
  OpenSSH clients, a clean build then pushes of new code; "start" + "health"
  is the deploy's instance start. The mode is chosen with DOTCLOUD_CGROUPS=0
  (no cgroups: what every version before issue 16 did), which exists for this
  comparison.

Rounds alternate the modes, so a busy moment of the machine hits both.
Prints medians; nothing is asserted.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from push_rounds import push_rounds  # noqa: E402

from dotcloud.resources import Limits  # noqa: E402
from runtime import cgroups, shimctl  # noqa: E402


def shim_start(root: Path, contained: bool, n: int) -> tuple[float, float]:
    """(spawn -> process running, SIGTERM -> shim gone) of one shim, in seconds."""
    d = root / f"i{n}"
    d.mkdir()
    spec = {"instance": f"bench.www.0#{n}", "log_path": str(d / "log"),
            "status_path": str(d / "status.json"), "pid_path": str(d / "pid"),
            "stop_grace": 5.0,
            "processes": {"web": {"argv": ["sleep", "300"], "cwd": "/",
                                  "env": {"PATH": "/usr/bin:/bin"}}}}
    if contained:
        spec["cgroup"] = cgroups.shim_spec(root / "data", 100000 + n,
                                           Limits(512 * 1024 ** 2, 1.0, 256))
    (d / "spec.json").write_text(json.dumps(spec))
    t0 = time.monotonic()
    pid = shimctl.spawn(d / "spec.json")
    while True:
        status = shimctl.read_status(d / "status.json") or {}
        if (status.get("processes") or {}).get("web", {}).get("pid"):
            break
        time.sleep(0.001)
    started = time.monotonic() - t0
    t1 = time.monotonic()
    shimctl.stop(pid)
    os.waitpid(pid, 0)
    return started, time.monotonic() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=30)
    ap.add_argument("--pushes", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if cgroups.hierarchies() is None:
        raise SystemExit("needs root and mounted cgroups")
    where = cgroups.hierarchies()
    print(f"cgroup v{where.version}: {', '.join(c or 'unified' for c, _ in where.mounts)}")
    root = Path(tempfile.mkdtemp(prefix="dotcloud-limbench-"))
    (root / "data").mkdir()
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    try:
        for n in range(args.starts):
            for contained in (False, True):
                times[contained].append(shim_start(root, contained, 2 * n + contained))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nshim start and stop, medians of {args.starts} each")
    print(f"{'':32} {'no cgroup':>10} {'cgroup':>10} {'cost':>9}")
    for i, key in enumerate(("spawn -> process running", "SIGTERM -> shim gone")):
        b = statistics.median(t[i] for t in times[False])
        a = statistics.median(t[i] for t in times[True])
        print(f"{key:32} {b * 1000:8.1f}ms {a * 1000:8.1f}ms {(a - b) * 1000:+7.1f}ms")
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode, into in (("0", before), ("1", after)):
            for key, values in push_rounds({"DOTCLOUD_CGROUPS": mode}, args.pushes).items():
                into.setdefault(key, []).extend(values)
    print(f"\npush to live, medians of {args.rounds} rounds ({args.pushes} pushes each, "
          "1 clean build each)")
    print(f"{'':32} {'no cgroups':>11} {'cgroups':>9} {'cost':>8}")
    for key in before:
        b, a = statistics.median(before[key]), statistics.median(after[key])
        print(f"{key:32} {b:10.3f}s {a:8.3f}s {a - b:+7.3f}s")


if __name__ == "__main__":
    main()
