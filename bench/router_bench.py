"""Router benchmark: our router against nginx as a reverse proxy, same upstream, same run.

Needs: apt-get install -y nginx wrk   (this script installs nothing)
Run:   python bench/router_bench.py [--duration 10] [--connections 64] [--proxy-cpu 0]
                                    [--other-cpu 1] [--access-log] [--rounds N]
                                    [--also NAME=PYTHON:TREE ...]

Layout (2-core machine): the proxy under test (nginx with one worker, or our
router, one process) is pinned to --proxy-cpu; the upstream (a tiny nginx
server block returning a fixed body, one worker) and wrk -t2 share
--other-cpu. Both proxies see the same upstream, the same load, the same
pinning. Prints requests/s, p99 latency and the router/nginx ratios, for a
small response and for 1 MiB responses. Never used by the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "bench.localhost"
SMALL_BODY = b"Hello from the upstream.\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def nginx_conf(work: Path, body: str, access_log: bool) -> str:
    log = f"access_log {work}/access.log;" if access_log else "access_log off;"
    return f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {log}
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    keepalive_requests 1000000;
    {body}
}}
"""


def start_nginx(work: Path, name: str, body: str, cpu: int, access_log: bool = False):
    d = work / name
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, body, access_log))
    return subprocess.Popen(["taskset", "-c", str(cpu), "nginx", "-c", str(conf), "-p", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def upstream_block(port: int, docroot: Path) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        access_log off;
        location = / {{ default_type text/plain; return 200 "{SMALL_BODY.decode().strip()}\\n"; }}
        location /big {{ root {docroot}; }}
    }}"""


def nginx_proxy_block(port: int, upstream_port: int, tls: tuple[Path, Path] | None = None) -> str:
    """nginx as the proxy the router is compared with; over HTTPS with tls=(cert, key)."""
    listen = f"127.0.0.1:{port}" + (" ssl" if tls else "")
    certificate = "" if tls is None else f"""
        ssl_certificate {tls[0]};
        ssl_certificate_key {tls[1]};
        ssl_protocols TLSv1.2 TLSv1.3;"""
    return f"""
    upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
    server {{
        listen {listen} backlog=4096;{certificate}
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $request_id;
            proxy_buffering on;
        }}
    }}"""


def start_router(work: Path, upstream_port: int, cpu: int, access_log: bool,
                 name: str = "router", python: str = sys.executable, tree: Path = ROOT,
                 args: tuple[str, ...] = (), route: dict | None = None, port_key: str = "port"):
    """A router process pinned to cpu; (process, the port named port_key in router.json)."""
    data = work / f"{name}-data"
    (data / "run").mkdir(parents=True, exist_ok=True)
    (data / "run" / "routes.json").write_text(json.dumps({"version": 1, "routes": {HOST: {
        "app": "bench", "service": "www", **(route or {}),
        "backends": [{"id": "bench.www.0", "host": "127.0.0.1", "port": upstream_port}]}}}))
    env = dict(os.environ, PYTHONPATH=str(tree),
               DOTCLOUD_ROUTER_ACCESS_LOG="1" if access_log else "0")
    log = open(work / f"{name}.log", "wb")
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), python, "-m", "router", "--data", str(data),
         "--port", "0", *args], cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            info = json.loads((data / "run" / "router.json").read_text())
            if info["pid"] == proc.pid:
                return proc, info[port_key]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise RuntimeError("router did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(master: subprocess.Popen) -> int:
    """The single nginx worker under a master process."""
    for _ in range(50):
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("no nginx worker")


def wrk(port: int, path: str, duration: int, connections: int, cpu: int,
        measured_pid: int | None = None, scheme: str = "http", headers: tuple = ()) -> dict:
    before = cpu_seconds(measured_pid) if measured_pid else 0.0
    extra = [arg for h in headers for arg in ("-H", h)]
    out = subprocess.run(
        ["taskset", "-c", str(cpu), "wrk", "-t2", f"-c{connections}", f"-d{duration}s",
         "--latency", "-H", f"Host: {HOST}", *extra, f"{scheme}://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mb = float(transfer.group(1)) * {"B": 1 / 1048576, "KB": 1 / 1024, "MB": 1, "GB": 1024}[transfer.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_us = ((cpu_seconds(measured_pid) - before) * 1e6 / requests) if measured_pid else 0.0
    return {"rps": rps, "p99_ms": p99, "mb_s": mb, "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else "", "raw": out,
            "cpu_us": cpu_us}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def check(port: int, path: str, expect_len: int) -> None:
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers={"Host": HOST})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200 or len(body) != expect_len:
        raise RuntimeError(f"sanity check failed on {port}{path}: {resp.status} {len(body)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--proxy-cpu", type=int, default=0)
    ap.add_argument("--other-cpu", type=int, default=1)
    ap.add_argument("--access-log", action="store_true",
                    help="both proxies write an access log (nginx to a file, router to stderr->file)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate nginx/router this many times")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=PYTHON:TREE",
                    help="another router build measured in the same rounds (say, the last "
                         "commit's checkout), reported against nginx like this one")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            print(f"missing {tool}: apt-get install -y nginx wrk", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="router-bench-"))
    work.chmod(0o755)     # nginx workers run unprivileged and must read the docroot
    (work / "docroot").mkdir()
    (work / "docroot" / "big").write_bytes(os.urandom(1 << 20))
    procs = []
    try:
        up_port, ngx_port = free_port(), free_port()
        procs.append(start_nginx(work, "upstream", upstream_block(up_port, work / "docroot"),
                                 args.other_cpu))
        nginx_proxy = start_nginx(work, "proxy", nginx_proxy_block(ngx_port, up_port),
                                  args.proxy_cpu, args.access_log)
        procs.append(nginx_proxy)
        router, router_port = start_router(work, up_port, args.proxy_cpu, args.access_log)
        procs.append(router)
        others = {}
        for spec in args.also:
            name, _, where = spec.partition("=")
            python, _, tree = where.partition(":")
            if not (name and python and tree) or name in ("nginx", "router"):
                print(f"--also {spec!r}: expected NAME=PYTHON:TREE", file=sys.stderr)
                return 2
            proc, port = start_router(work, up_port, args.proxy_cpu, args.access_log,
                                      name, python, Path(tree).resolve())
            procs.append(proc)
            others[name] = (port, proc.pid)
        for port in (up_port, ngx_port, router_port, *(p for p, _ in others.values())):
            wait_port(port)
        for port in (ngx_port, router_port, *(p for p, _ in others.values())):
            check(port, "/", len(SMALL_BODY))
            check(port, "/big", 1 << 20)
        measured = {"nginx": (ngx_port, worker_pid(nginx_proxy)),
                    "router": (router_port, router.pid), **others}
        results = {}
        for label, path in (("small", "/"), ("1MiB", "/big")):
            for rnd in range(args.rounds):
                for name, (port, pid) in measured.items():
                    wrk(port, path, 2, args.connections, args.other_cpu)     # warm-up
                    r = wrk(port, path, args.duration, args.connections, args.other_cpu, pid)
                    results.setdefault((label, name), []).append(r)
        print(f"cores: proxy under test on CPU {args.proxy_cpu} (nginx: 1 worker; router: 1 process); "
              f"upstream nginx (1 worker) and wrk -t2 -c{args.connections} on CPU {args.other_cpu}; "
              f"{os.cpu_count()} CPUs total; access log {'on' if args.access_log else 'off'} on both")
        print(f"router: {ROOT} under Python {platform.python_version()}, "
              f"{Path(sys.executable).resolve()}")
        for spec in args.also:
            print(f"also: {spec}")
        for label in ("small", "1MiB"):
            nginx_runs = results[(label, "nginx")]
            n = _best(nginx_runs)
            print(f"\n[{label} responses] wrk -t2 -c{args.connections} -d{args.duration}s")
            print(f"  {'':8} {'req/s':>10} {'p99 ms':>8} {'MB/s':>8} {'CPU us/req':>11} {'errors':>7}")
            for name in measured:
                x = _best(results[(label, name)])
                print(f"  {name:8} {x['rps']:10.0f} {x['p99_ms']:8.2f} {x['mb_s']:8.1f} "
                      f"{x['cpu_us']:11.1f} {x['non2xx']:>7} {x['socket_errors']}")
            print("  all runs (req/s): " + "; ".join(
                f"{name} " + ", ".join(f"{x['rps']:.0f}" for x in results[(label, name)])
                for name in measured))
            for name in measured:
                if name == "nginx":
                    continue
                runs = results[(label, name)]
                r = _best(runs)
                print(f"  {name}/nginx, best of each: req/s {r['rps'] / n['rps']:.3f}, "
                      f"p99 {r['p99_ms'] / n['p99_ms']:.2f}x, "
                      f"CPU per request {r['cpu_us'] / n['cpu_us']:.2f}x")
                # each round ran nginx then the routers back to back: the ratio
                # within a round is the one least moved by what else the machine does
                ratios = sorted(x["rps"] / y["rps"] for y, x in zip(nginx_runs, runs))
                p99s = sorted(x["p99_ms"] / y["p99_ms"] for y, x in zip(nginx_runs, runs))
                print(f"  {name}/nginx by round: req/s " + ", ".join(f"{x:.3f}" for x in ratios)
                      + f" (median {statistics.median(ratios):.3f}); p99 median "
                      f"{statistics.median(p99s):.2f}x")
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM if p.args[-1] != "0" else signal.SIGINT)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def _best(runs: list) -> dict:
    return max(runs, key=lambda r: r["rps"])


if __name__ == "__main__":
    sys.exit(main())
