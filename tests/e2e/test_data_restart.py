"""`restart APP db` and `run APP db -- ...` of data services through real
pushes (the process runtime): a restart returns once the server serves
again, so a client connecting right after it gets in; one that does not
serve in time fails the restart in one line; a data service's `run` gets
what its clients read (psql and redis-cli connect with no address)."""
import socket
import subprocess
import time

import pytest
from platform_helpers import git_repo

from dotcloud.state import Store

pytestmark = pytest.mark.slow

APP = "restartdb"
BUILDFILE = """\
www:
  type: python
db:
  type: postgresql
  healthcheck: {timeout: 5}
cache:
  type: redis
"""
WSGI = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def env_of(platform, service: str) -> dict:
    store = Store(platform.data / "dotcloud.db")
    gen = store.app(APP).generation
    inst = next(i for i in store.instances(APP, generation=gen)
                if i.service == service and i.desired == "run")
    return inst.spec.env


def psql_once(url: str, sql: str) -> subprocess.CompletedProcess:
    """One connection, no retry: it must get in at the first try."""
    return subprocess.run(["psql", url, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "30"})


def redis_once(env: dict, *command: str) -> str:
    with socket.create_connection((env["DOTCLOUD_CACHE_REDIS_HOST"],
                                   int(env["DOTCLOUD_CACHE_REDIS_PORT"])), 30) as s:
        f = s.makefile("rb")
        out = ""
        for cmd in (("AUTH", env["DOTCLOUD_CACHE_REDIS_PASSWORD"]), command):
            s.sendall(("*%d\r\n" % len(cmd) + "".join(
                "$%d\r\n%s\r\n" % (len(a), a) for a in cmd)).encode())
            out = f.readline().decode().strip()
            if out.startswith("$") and out != "$-1":
                out = f.readline().decode().strip()
        return out


@pytest.fixture(scope="module")
def pushed(platform, tmp_path_factory):
    repo = git_repo(tmp_path_factory.mktemp("restartdb") / "repo",
                    {"dotcloud.yml": BUILDFILE, "wsgi.py": WSGI, "requirements.txt": ""})
    r = platform.push("alice", repo, APP)
    assert r.code == 0, r.err
    yield repo
    platform.ssh("alice", "destroy", APP, "--force")


def test_restart_of_a_data_service_returns_once_it_serves(platform, pushed):
    url = env_of(platform, "db")["DATABASE_URL"]
    assert psql_once(url, "CREATE TABLE notes(t text); INSERT INTO notes VALUES ('kept')"
                     ).returncode == 0
    before = psql_once(url, "SELECT pg_postmaster_start_time()").stdout
    t0 = time.monotonic()
    r = platform.ssh("alice", "restart", APP, "db")
    took = time.monotonic() - t0
    assert r.code == 0, r.text
    # At once, one try: the server accepts it (before, this was "connection refused").
    got = psql_once(url, "SELECT t FROM notes")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "kept"
    assert psql_once(url, "SELECT pg_postmaster_start_time()").stdout != before
    assert "[db.0] Waiting for the server to accept connections..." in r.text
    assert "[db.0] Accepting connections" in r.text and "[db.0] Restarted" in r.text
    print(f"restart of db (postgresql, process runtime): {took:.1f}s")

    cache = env_of(platform, "cache")
    assert redis_once(cache, "SET", "greeting", "hi") == "+OK"
    t0 = time.monotonic()
    r = platform.ssh("alice", "restart", APP, "cache")
    took = time.monotonic() - t0
    assert r.code == 0, r.text
    assert redis_once(cache, "GET", "greeting") == "hi"
    print(f"restart of cache (redis, process runtime): {took:.1f}s")


def test_restart_of_a_data_service_that_never_serves_fails_in_one_line(platform, pushed):
    # A standby without a primary runs on and refuses every client ("hot
    # standby mode is disabled"): running, never serving.
    pgdata = platform.data / "services" / APP / "db" / "pgdata"
    conf = pgdata / "postgresql.conf"
    original = conf.read_text()
    conf.write_text(original + "\nhot_standby = off\n")
    (pgdata / "standby.signal").write_text("")
    try:
        r = platform.ssh("alice", "restart", APP, "db")
        assert r.code != 0
        lines = [line for line in r.err.splitlines() if "not accepting" in line]
        assert len(lines) == 1, r.text
        assert "db.0 not accepting connections 5s after the restart" in lines[0]
        assert f"see: logs {APP} db.0" in lines[0]
    finally:
        (pgdata / "standby.signal").unlink(missing_ok=True)
        conf.write_text(original)
    # Put right, it restarts and serves, its data as it was.
    r = platform.ssh("alice", "restart", APP, "db")
    assert r.code == 0, r.text
    got = psql_once(env_of(platform, "db")["DATABASE_URL"], "SELECT 1")
    assert got.returncode == 0, got.stderr


def test_run_in_a_data_service_reaches_its_server(platform, pushed):
    r = platform.ssh("alice", "run", APP, "db", "--", "psql", "-AtXc", "'select 40 + 2'")
    assert r.code == 0, r.text
    assert r.out.strip() == "42"
    r = platform.ssh("alice", "run", APP, "cache", "--", "sh", "-c",
                     """'redis-cli -u "$REDIS_URL" ping'""")
    assert r.code == 0, r.text
    assert r.out.strip() == "PONG"
    # REDISCLI_AUTH: the password without the URL.
    r = platform.ssh("alice", "run", APP, "cache", "--", "sh", "-c",
                     """'redis-cli -h "$DOTCLOUD_CACHE_REDIS_HOST" """
                     """-p "$DOTCLOUD_CACHE_REDIS_PORT" ping'""")
    assert r.code == 0, r.text
    assert r.out.strip() == "PONG"
