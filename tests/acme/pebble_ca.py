"""A real ACME server for the tests: Debian's `pebble`, with
`pebble-challtestsrv` as its DNS server (every name is 127.0.0.1 unless a
test says otherwise through its management API).

Debian ships neither pebble's test CA nor its localhost certificate, so the
certificate of pebble's own HTTPS is made here; its CA is what the platform
gets as `acme_ca_bundle`.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tlskit import CA


def available() -> bool:
    return bool(shutil.which("pebble") and shutil.which("pebble-challtestsrv"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem): a CA and a certificate for localhost/127.0.0.1."""
    ca = CA("dotcloud test pebble CA", days=30)
    chain, key, _ = ca.issue("localhost", "127.0.0.1", days=30)
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.pem)
    paths[1].write_bytes(chain)
    paths[2].write_bytes(key)
    return paths


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            assert time.monotonic() < deadline, f"{what} never listened on {port}"
            time.sleep(0.05)


@dataclass
class Pebble:
    """pebble + pebble-challtestsrv; start() once the router's HTTP port is known."""
    directory: Path
    validity: int = 3600              # seconds: certificateValidityPeriod
    acme_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    challtest_port: int = field(default_factory=free_port)
    procs: list = field(default_factory=list)

    def __post_init__(self):
        self.ca, self.cert, self.key = make_tls(self.directory / "tls")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def config_yml(self) -> str:
        """The platform's settings that point it at this CA."""
        return (f"acme_directory: {self.url}\nacme_email: ops@dotcloud.test\n"
                f"acme_ca_bundle: {self.ca}\n")

    def start(self, http_port: int) -> None:
        log = open(self.directory / "pebble.log", "ab")
        self.procs.append(subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{self.challtest_port}"],
            stdout=log, stderr=log, start_new_session=True))
        _wait_port(self.challtest_port, self.procs[-1], "pebble-challtestsrv")
        config = self.directory / "pebble-config.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.cert), "privateKey": str(self.key),
            "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
            "certificateValidityPeriod": self.validity}}))
        self._start_pebble()

    def _start_pebble(self) -> None:
        log = open(self.directory / "pebble.log", "ab")
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_AUTHZREUSE="0",
                   PEBBLE_WFE_NONCEREJECT="0")
        self.procs.append(subprocess.Popen(
            ["pebble", "-config", str(self.directory / "pebble-config.json"),
             "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=log, stderr=log, env=env, start_new_session=True))
        _wait_port(self.acme_port, self.procs[-1], "pebble")

    def restart(self) -> None:
        """pebble again, with the same ports: it forgets every account and order."""
        proc = self.procs.pop()
        proc.terminate()
        proc.wait(10)
        self._start_pebble()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    # -- challtestsrv's DNS -------------------------------------------------

    def _dns(self, op: str, body: dict) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.challtest_port}/{op}",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, resp.status

    def resolve(self, name: str, address: str) -> None:
        """From now on `name` is `address` for pebble."""
        self._dns("add-a", {"host": name + ".", "addresses": [address]})

    def unresolve(self, name: str) -> None:
        self._dns("clear-a", {"host": name + "."})

    # -- what pebble issues from ------------------------------------------

    def roots(self) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.management_port}/roots/0",
                                    context=ctx, timeout=10) as resp:
            return resp.read()
