"""Commands over SSH: how long a command takes end to end (real OpenSSH
client, key exchange included), how fast `logs -n` reads a large log, and how
soon `logs -f` shows a new line.

    python bench/commands_bench.py [--runs 20]

(Kept beside the tests it shares helpers with; pytest does not collect it.)

Starts its own platform on free ports in a temporary directory and prints
its figures, with the cost of a bare connection (`help`) beside the others
for comparison; nothing here is asserted.
"""
import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from platform_helpers import Platform, git_repo, python_app  # noqa: E402

LOG_LINE = "2026-11-25T19:30:01.123Z web: " + "x" * 90 + "\n"


def timed(p: Platform, runs: int, *words: str) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        r = p.ssh("alice", *words)
        out.append(time.monotonic() - t0)
        if r.code != 0:
            raise SystemExit(f"{words} failed: {r.text}")
    return out


def follow_latency(p: Platform, app: str, runs: int) -> list[float]:
    argv = p.ssh_command("alice").split() + ["-p", str(p.ssh_port), "dotcloud@127.0.0.1",
                                             f"logs {app} -f -n 1"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    fd = proc.stdout.fileno()
    seen = b""
    try:
        while b"\n" not in seen:
            seen += os.read(fd, 65536)
        out = []
        for i in range(runs):
            marker = f"/follow-{i}".encode()
            t0 = time.monotonic()
            p.get(f"{app}.localhost", marker.decode())
            while marker not in seen:
                if select.select([fd], [], [], 10)[0]:
                    seen += os.read(fd, 65536)
                else:
                    raise SystemExit("logs -f showed nothing for 10s")
            out.append(time.monotonic() - t0)
        return out
    finally:
        proc.kill()
        proc.wait()


def show(name: str, values: list[float]) -> None:
    ms = sorted(v * 1000 for v in values)
    print(f"{name:<44} median {statistics.median(ms):7.1f} ms   "
          f"p90 {ms[int(len(ms) * 0.9) - 1]:7.1f} ms   n={len(ms)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cmdbench-") as tmp:
        root = Path(tmp)
        p = Platform(data=root / "data", home=root)
        p.start()
        try:
            p.add_user("alice", admin=True)
            repo = git_repo(root / "app", python_app("bench"))
            if p.push("alice", repo, "bench").code != 0:
                raise SystemExit("push failed")
            for n in range(30):
                p.ssh("alice", "create", f"filler-{n}")
            show("help (connection + auth + one command)", timed(p, args.runs, "help"))
            show("list (31 apps)", timed(p, args.runs, "list"))
            show("list --json (31 apps)", timed(p, args.runs, "list", "--json"))
            show("status bench", timed(p, args.runs, "status", "bench"))
            show("info bench --json", timed(p, args.runs, "info", "bench", "--json"))
            log = p.data / "logs" / "bench" / "www.0.log"
            with open(log, "a") as f:
                f.write(LOG_LINE * 80000)   # ~9.6 MB, under the 10 MB rotation size
            size = log.stat().st_size / 1e6
            show(f"logs bench -n 100 ({size:.1f} MB log)", timed(p, args.runs, "logs", "bench", "-n", "100"))
            show(f"logs bench -n 10000 ({size:.1f} MB log)",
                 timed(p, max(3, args.runs // 4), "logs", "bench", "-n", "10000"))
            show("logs -f: HTTP request -> its log line shown", follow_latency(p, "bench", args.runs))
            show("var set (a zero-downtime release)",
                 timed(p, max(3, args.runs // 4), "var", "set", "bench", "X=1"))
        finally:
            p.stop()


if __name__ == "__main__":
    main()
