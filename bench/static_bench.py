"""Static service benchmark: buildpacks.staticserve against nginx on the same files.

Both servers get one process (nginx: one worker) on 127.0.0.1 and the same
directory; wrk (Debian package `wrk`) loads each for a few seconds per case:
a small page, the same page gzipped, a 1 MiB file, and a 304 revalidation.
nginx is the comparison beside our figures; it is skipped if not installed.

    python bench/static_bench.py [--seconds 5] [--connections 32]
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATICSERVE = Path(__file__).resolve().parent.parent / "buildpacks" / "staticserve.py"
NGINX_CONF = """\
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  gzip on;
  gzip_types text/css text/javascript application/json;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    add_header Cache-Control no-cache;
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def etag_of(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"HEAD {path} HTTP/1.0\r\n\r\n".encode())
        head = s.recv(4096).decode("latin-1")
    return re.search(r"(?im)^etag: (.+?)\r$", head).group(1)


def wrk(port: int, path: str, headers: dict, seconds: int, connections: int) -> tuple[float, str]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(argv + [f"http://127.0.0.1:{port}{path}"], capture_output=True,
                         text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    return rate, p99


def start_staticserve(root: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-I", str(STATICSERVE), "--root", str(root),
                             "--port", str(port)], stdout=subprocess.DEVNULL)


def start_nginx(root: Path, port: int, tmp: Path) -> subprocess.Popen:
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    return subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"],
                            stderr=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="static-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx workers run as another user
        root = tmp / "site"
        root.mkdir()
        (root / "index.html").write_text("<!doctype html><p>hello</p>\n" * 80)   # ~2 KiB
        (root / "app.css").write_text("body { margin: 0; color: #333 }\n" * 1000)  # ~32 KiB
        (root / "big.bin").write_bytes(os.urandom(1024 * 1024))
        servers = [("staticserve", start_staticserve)]
        if shutil.which("nginx"):
            servers.append(("nginx", lambda r, p: start_nginx(r, p, tmp)))
        results = {}
        for name, start in servers:
            port = free_port()
            proc = start(root, port)
            try:
                wait_listening(port)
                etag = etag_of(port, "/index.html")
                cases = [("2 KiB page", "/index.html", {}),
                         ("32 KiB css, gzip", "/app.css", {"Accept-Encoding": "gzip"}),
                         ("1 MiB file", "/big.bin", {}),
                         ("304 revalidation", "/index.html", {"If-None-Match": etag})]
                for label, path, headers in cases:
                    results[(name, label)] = wrk(port, path, headers, args.seconds,
                                                 args.connections)
            finally:
                proc.terminate()
                proc.wait()
        names = [name for name, _ in servers]
        print(f"wrk -t2 -c{args.connections} -d{args.seconds}s, one server process each, "
              f"{os.cpu_count()} cores")
        print(f"{'case':<20}" + "".join(f"{n + ' req/s':>18}{'p99':>10}" for n in names))
        for label in [label for (n, label) in results if n == names[0]]:
            row = f"{label:<20}"
            for n in names:
                rate, p99 = results[(n, label)]
                row += f"{rate:>18,.0f}{p99:>10}"
            print(row)


if __name__ == "__main__":
    main()
