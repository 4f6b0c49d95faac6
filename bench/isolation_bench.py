"""What a user per app costs (issue 16): push-to-live and instance start,
with apps as their own users and, for comparison, as the platform's user.

    sudo python bench/isolation_bench.py [--pushes 7]

Needs root (only a root platform gives apps users of their own). Per round
and mode it starts a platform on free ports, in a data directory under /tmp
(app users pass through it), with the real git and OpenSSH clients, and
pushes: a clean build (new requirements: a virtualenv made, installed and
sealed), then new code with unchanged requirements. Then it times handing
over and sealing a copy of a large tree (the platform's own virtualenv). "start" is the deploy's
phase from the instances launched to the shims running them, "health" from
there to the first answer, so start + health is an instance's start. The
mode is chosen with DOTCLOUD_APP_USERS=0 (the platform's own user: what
every version before issue 16 did), which exists for this comparison.
Prints medians; nothing is asserted.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from push_rounds import push_rounds  # noqa: E402

from dotcloud.filemodes import own_tree, seal  # noqa: E402


def sealing(tree: Path) -> tuple[int, float, float]:
    """(entries, seconds to hand a copy of `tree` to a user, seconds to seal it)."""
    work = Path(tempfile.mkdtemp(prefix="dotcloud-isobench-", dir="/tmp"))
    try:
        subprocess.run(["cp", "-a", str(tree), str(work / "t")], check=True)
        t0 = time.monotonic()
        own_tree(work / "t", 61999, 61999)
        t1 = time.monotonic()
        count = seal(work / "t")
        return count, t1 - t0, time.monotonic() - t1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: only a root platform gives apps users of their own")
    # Each round runs both modes, first one then the other: a busy moment of
    # the machine, or whatever the first platform of a round pays, hits both.
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}
    for n in range(args.rounds):
        modes = (("0", before), ("1", after))
        for mode, into in modes if n % 2 == 0 else modes[::-1]:
            for key, values in push_rounds({"DOTCLOUD_APP_USERS": mode}, args.pushes).items():
                into.setdefault(key, []).extend(values)
    print(f"medians of {args.rounds} rounds ({args.pushes} pushes each, 1 clean build each)")
    print(f"{'':32} {'platform user':>14} {'app users':>10} {'cost':>8}")
    for key in before:
        b, a = statistics.median(before[key]), statistics.median(after[key])
        print(f"{key:32} {b:13.3f}s {a:9.3f}s {a - b:+7.3f}s")
    venv = Path(sys.prefix)     # a large python tree: the platform's own virtualenv
    count, owned, sealed = sealing(venv)
    print(f"\nhanding over and sealing a copy of {venv} ({count} entries): "
          f"own_tree {owned * 1000:.0f} ms, seal {sealed * 1000:.0f} ms")


if __name__ == "__main__":
    main()
