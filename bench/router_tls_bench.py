"""HTTPS benchmark: our router against nginx, the same certificate, the same upstream, same run.

Needs: apt-get install -y nginx wrk   (this script installs nothing)
Run:   python bench/router_tls_bench.py [--duration 10] [--connections 64]
                                        [--handshake-connections 16] [--rounds N]
                                        [--proxy-cpu 0] [--other-cpu 1]

Two loads, each on both proxies (nginx: one worker; the router: one
process; both pinned to --proxy-cpu, the upstream nginx and wrk on
--other-cpu, as in router_bench.py):

  keep-alive   wrk -t2 -cN over HTTPS: one handshake per connection, then
               requests on it (what a browser or an API client does)
  handshakes   the same with `Connection: close`: every request is a new
               TCP connection and a full TLS handshake (wrk resumes no
               session), so it measures new TLS connections per second

The certificate is one ECDSA P-256 leaf made here, served by both (the
router as its platform certificate, which SNI falls back to for the name
wrk sends); TLS 1.3 both, access logs off both. Prints req/s, p99 and
the router/nginx ratios. Never used by the test suite.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from dotcloud import selfsigned  # noqa: E402
from router_bench import (HOST, SMALL_BODY, free_port, nginx_proxy_block,  # noqa: E402
                          start_nginx, start_router, upstream_block, wait_port, worker_pid,
                          wrk)


def make_certificate(work: Path) -> tuple[Path, Path]:
    made = selfsigned.make(HOST, days=30)
    cert_path, key_path = work / "cert.pem", work / "key.pem"
    cert_path.write_bytes(made.cert_pem)
    key_path.write_bytes(made.key_pem)
    return cert_path, key_path


def check(port: int) -> None:
    import http.client
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    conn.request("GET", "/", headers={"Host": HOST})
    resp = conn.getresponse()
    if resp.status != 200 or resp.read() != SMALL_BODY:
        raise RuntimeError(f"sanity check failed on {port}: {resp.status}")


def https_wrk(port: int, duration: int, connections: int, cpu: int, pid: int,
              close: bool) -> dict:
    """wrk over https://, with Connection: close for the handshake load."""
    return wrk(port, "/", duration, connections, cpu, pid, scheme="https",
               headers=("Connection: close",) if close else ())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--handshake-connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--proxy-cpu", type=int, default=0)
    ap.add_argument("--other-cpu", type=int, default=1)
    ap.add_argument("--loads", default="keep-alive,handshakes",
                    help="which loads to run (comma-separated)")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            print(f"missing {tool}: apt-get install -y nginx wrk", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="router-tls-bench-"))
    work.chmod(0o755)
    (work / "docroot").mkdir()
    procs = []
    try:
        cert, key = make_certificate(work)
        for path in (cert, key):
            path.chmod(0o644)        # nginx reads them as root before dropping; harmless here
        up_port, ngx_port = free_port(), free_port()
        procs.append(start_nginx(work, "upstream", upstream_block(up_port, work / "docroot"),
                                 args.other_cpu))
        nginx = start_nginx(work, "proxy", nginx_proxy_block(ngx_port, up_port, (cert, key)),
                            args.proxy_cpu)
        procs.append(nginx)
        router, router_port = start_router(
            work, up_port, args.proxy_cpu, access_log=False, route={"allow_http": True},
            args=("--https-port", "0", "--tls-cert", str(cert), "--tls-key", str(key),
                  "--domain", "localhost"), port_key="https_port")
        procs.append(router)
        for port in (up_port, ngx_port, router_port):
            wait_port(port)
        for port in (ngx_port, router_port):
            check(port)
        measured = {"nginx": (ngx_port, worker_pid(nginx)), "router": (router_port, router.pid)}
        loads = tuple(load for load in (("keep-alive", False, args.connections),
                                        ("handshakes", True, args.handshake_connections))
                      if load[0] in args.loads.split(","))
        results = {}
        for label, close, conns in loads:
            for _ in range(args.rounds):
                for name, (port, pid) in measured.items():
                    https_wrk(port, 2, conns, args.other_cpu, pid, close)       # warm-up
                    results.setdefault((label, name), []).append(
                        https_wrk(port, args.duration, conns, args.other_cpu, pid, close))
        print(f"cores: proxy under test on CPU {args.proxy_cpu} (nginx: 1 worker; router: 1 "
              f"process); upstream nginx (1 worker) and wrk -t2 on CPU {args.other_cpu}; "
              f"{os.cpu_count()} CPUs; ECDSA P-256 certificate; access logs off")
        print(f"router: {ROOT} under Python {platform.python_version()}")
        for label, close, conns in loads:
            n = max(results[(label, "nginx")], key=lambda r: r["rps"])
            r = max(results[(label, "router")], key=lambda r: r["rps"])
            print(f"\n[{label}] wrk -t2 -c{conns} -d{args.duration}s"
                  + (" -H 'Connection: close'" if close else ""))
            print(f"  {'':8} {'req/s':>10} {'p99 ms':>8} {'CPU us/req':>11} {'errors':>7}")
            for name, x in (("nginx", n), ("router", r)):
                print(f"  {name:8} {x['rps']:10.0f} {x['p99_ms']:8.2f} {x['cpu_us']:11.1f} "
                      f"{x['non2xx']:>7} {x['socket_errors']}")
            print("  all runs (req/s): " + "; ".join(
                f"{name} " + ", ".join(f"{x['rps']:.0f}" for x in results[(label, name)])
                for name in measured))
            print(f"  router/nginx, best of each: req/s {r['rps'] / n['rps']:.3f}, "
                  f"p99 {r['p99_ms'] / n['p99_ms']:.2f}x, CPU per request "
                  f"{r['cpu_us'] / n['cpu_us']:.2f}x")
            # nginx then the router, back to back: the within-round ratio moves
            # least with what else the machine does
            pairs = list(zip(results[(label, "nginx")], results[(label, "router")]))
            print("  router/nginx by round: req/s " + ", ".join(
                f"{x['rps'] / y['rps']:.3f}" for y, x in pairs)
                + f" (median {statistics.median(x['rps'] / y['rps'] for y, x in pairs):.3f});"
                f" p99 median {statistics.median(x['p99_ms'] / y['p99_ms'] for y, x in pairs):.2f}x;"
                f" CPU/request median "
                f"{statistics.median(x['cpu_us'] / y['cpu_us'] for y, x in pairs):.2f}x")
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
