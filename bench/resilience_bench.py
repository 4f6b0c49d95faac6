"""Resilience benchmark (issue 5): kill -9 each part of a running platform,
again and again, under continuous load, and print what the clients saw and
how long each part took to come back.

    python bench/resilience_bench.py [--rounds 5] [--clients 6]

Starts its own platform on free ports in a temporary directory, deploys a
one-instance app and a two-instance app, then for every round and every
kind of kill: starts the load, waits for good answers, kills, waits until
the part is back and answering, and stops the load. "Back" is measured from
the kill to: the daemon's port (ssh) or control socket (runtime) answering,
a good answer through the router on a fresh connection (router), the
instance answering on its own port again (app process, shim). Nothing here is asserted; the
tests in tests/resilience assert the promises.
"""
import argparse
import statistics
from collections import Counter
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "resilience")]
from loadgen import Load  # noqa: E402
from platform_helpers import Platform, git_repo, python_app  # noqa: E402
from resilience_helpers import (daemon_pid, get_direct, instance, instances, kill9,  # noqa: E402
                                listening, process_pid, runtime_ping, shim_status,
                                wait_until)

TWO = "www:\n  type: python\n  instances: 2\n"
STABLE = 31.0  # the shim's stable_after (30 s), and a margin


def kill_ssh(p: Platform, killed_at: list) -> None:
    old = daemon_pid(p.data, "ssh")
    kill9(old)
    killed_at.append(time.monotonic())
    wait_until(lambda: daemon_pid(p.data, "ssh") not in (None, old) and listening(p.ssh_port),
               what="ssh back", poll=0.005)


def kill_runtime(p: Platform, killed_at: list) -> None:
    old = daemon_pid(p.data, "runtime")
    kill9(old)
    killed_at.append(time.monotonic())
    wait_until(lambda: runtime_ping(p.data) not in (None, old), what="runtime back", poll=0.005)


def kill_router(p: Platform, killed_at: list) -> None:
    kill9(daemon_pid(p.data, "router"))
    killed_at.append(time.monotonic())
    wait_until(lambda: serves(p, "one.localhost", "one"), what="router back", poll=0.002)


def serves(p: Platform, host: str, body: str) -> bool:
    """A good answer through the router on a fresh connection."""
    try:
        return p.get(host, timeout=1)[:2] == (200, body)
    except OSError:
        return False


def kill_app_process(p: Platform, killed_at: list) -> None:
    inst = instances(p.data, "two")[0]
    old = process_pid(p.data, inst.id)
    # Killed before it ran STABLE seconds, a process restarts after a doubled
    # delay (1, 2, 4 s...): measure the first crash, not the backoff.
    started = shim_status(p.data, inst.id)["processes"]["web"]["started_at"]
    time.sleep(max(0.0, started + STABLE - time.time()))
    kill9(old)
    killed_at.append(time.monotonic())
    wait_until(lambda: process_pid(p.data, inst.id) not in (None, old)
               and get_direct(inst.port, "two.localhost") == (200, "two"),
               what="instance back", poll=0.005)


def kill_shim(p: Platform, killed_at: list) -> None:
    inst = instances(p.data, "two")[1]
    old = instance(p.data, inst.id).pid
    kill9(old)
    killed_at.append(time.monotonic())
    wait_until(lambda: instance(p.data, inst.id).pid not in (None, old)
               and get_direct(inst.port, "two.localhost") == (200, "two"),
               what="instance back", poll=0.005)


KILLS = [  # (what, app under load, how)
    ("ssh daemon", "one", kill_ssh),
    ("runtime daemon", "one", kill_runtime),
    ("router", "one", kill_router),
    ("app process, 1 of 2 instances", "two", kill_app_process),
    ("shim, 1 of 2 instances", "two", kill_shim),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=6)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dotcloud-resilience-"))
    p = Platform(data=root / "data", home=root)
    p.start()
    try:
        p.add_user("alice", admin=True)
        for app, files in (("one", python_app("one")),
                           ("two", {**python_app("two"), "dotcloud.yml": TWO})):
            r = p.push("alice", git_repo(root / app, files), app)
            if r.code != 0:
                raise SystemExit(f"push failed:\n{r.text}")
        results = {what: [] for what, _, _ in KILLS}
        errors = {what: [] for what, _, _ in KILLS}
        for _ in range(args.rounds):
            for what, app, how in KILLS:
                killed_at: list = []
                with Load(p.http_port, f"{app}.localhost", clients=args.clients) as load:
                    load.wait_ok(100)
                    before = load.failures
                    how(p, killed_at)
                    back = time.monotonic() - killed_at[0]
                    load.wait_ok(100)
                    time.sleep(0.5)  # anything that fails late fails inside the window
                results[what].append((back, load.failures - before, load.total))
                errors[what].extend(f.error for f in load.errors)
        print(f"{args.rounds} rounds, {args.clients} clients (half keep-alive); "
              "back = from the kill to answering again")
        print(f"{'kill -9 of':<32} {'back (median, max)':>20} {'failed requests':>16} "
              f"{'of requests':>12}")
        for what, rows in results.items():
            backs = [r[0] for r in rows]
            print(f"{what:<32} {statistics.median(backs):>9.2f}s {max(backs):>7.2f}s "
                  f"{sum(r[1] for r in rows):>16} {sum(r[2] for r in rows):>12}")
        for what, seen in errors.items():
            if seen and what != "router":
                kinds = Counter(seen).most_common(3)
                print(f"  {what}: " + ", ".join(f"{k} x{n}" for k, n in kinds))
    finally:
        p.stop()


if __name__ == "__main__":
    main()
