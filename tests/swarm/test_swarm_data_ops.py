"""`restart APP db` and `run APP db -- ...` of data services on the 3-node test
swarm: a restart returns once the server on its node serves again (a client
connecting right after gets in, its data there); a data service's `run` is
a one-off task of the data image on the service's node, with what its
clients read, so `psql -c ...` and `redis-cli` reach the server. One whose
server never serves fails the restart in one line."""
import shlex
import time

import pytest
from platform_helpers import git_repo
from swarmkit import in_node
# The data image, the nodes' engines and the pushed apps' cleanup, as there.
from test_swarm_data import active, apps, data_image, data_node, nodes_engines  # noqa: F401

pytestmark = pytest.mark.swarm

APP = "dataops"
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


def run(splatform, service: str, *argv: str):
    """`run APP SERVICE -- ARGV`, each argument quoted for the SSH command line."""
    return splatform.ssh("alice", "run", APP, service, "--", *map(shlex.quote, argv),
                         timeout=300)


def psql_from_n1(splatform, sql: str):
    """One connection, no retry, from the manager's node."""
    url = active(splatform, APP)["www.0"].spec.env["DATABASE_URL"]
    return in_node(1, "psql", f"{url}?sslmode=require&connect_timeout=30", "-AtX",
                   "-v", "ON_ERROR_STOP=1", "-c", sql, timeout=60)


@pytest.fixture(scope="module")
def pushed(splatform, apps, tmp_path_factory):  # noqa: F811
    repo = git_repo(tmp_path_factory.mktemp("dataops") / "repo",
                    {"dotcloud.yml": BUILDFILE, "wsgi.py": WSGI, "requirements.txt": ""})
    apps.append(APP)
    r = splatform.push("alice", repo, APP)
    assert r.code == 0, r.err
    return repo


def test_run_in_a_data_service_runs_on_its_node_and_reaches_it(splatform, cluster, pushed):
    t0 = time.monotonic()
    r = run(splatform, "db", "psql", "-AtXc",
            "CREATE TABLE IF NOT EXISTS notes(t text); INSERT INTO notes VALUES ('kept'); "
            "SELECT inet_server_addr()")
    took = time.monotonic() - t0
    assert r.code == 0, r.text
    node = active(splatform, APP)["db.0"].spec.env["DOTCLOUD_DB_POSTGRESQL_HOST"]
    assert r.out.strip().splitlines()[-1] == node
    print(f"run db -- psql on swarm: {took:.1f}s")
    # It ran on the service's node, beside the server (its hostname is the node's).
    r = run(splatform, "db", "hostname")
    assert r.code == 0, r.text
    assert r.out.strip() == data_node(cluster, splatform, APP, "db")
    r = run(splatform, "cache", "sh", "-c", 'redis-cli -u "$REDIS_URL" set greeting hi')
    assert r.code == 0, r.text
    assert r.out.strip() == "OK"
    # The server's password, not the command line's: REDISCLI_AUTH.
    r = run(splatform, "cache", "sh", "-c",
            'redis-cli -h "$DOTCLOUD_CACHE_REDIS_HOST" -p "$DOTCLOUD_CACHE_REDIS_PORT" '
            'get greeting')
    assert r.code == 0, r.text
    assert r.out.strip() == "hi"
    # A command the data image lacks says so, as any run does.
    r = run(splatform, "db", "no-such-tool")
    assert r.code == 127 and "no-such-tool: command not found" in r.err, r.text


def test_restart_of_a_data_service_returns_once_it_serves_on_its_node(splatform, pushed):
    assert run(splatform, "db", "psql", "-AtXc",
               "CREATE TABLE IF NOT EXISTS notes(t text); INSERT INTO notes VALUES ('kept')"
               ).code == 0
    before = psql_from_n1(splatform, "SELECT pg_postmaster_start_time()").stdout
    t0 = time.monotonic()
    r = splatform.ssh("alice", "restart", APP, "db", timeout=300)
    took = time.monotonic() - t0
    assert r.code == 0, r.text
    # At once, one try: the server on its node accepts it.
    got = psql_from_n1(splatform, "SELECT t FROM notes LIMIT 1")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "kept"
    assert psql_from_n1(splatform, "SELECT pg_postmaster_start_time()").stdout != before
    assert "[db.0] Accepting connections" in r.text and "[db.0] Restarted" in r.text
    print(f"restart of db (postgresql, swarm runtime): {took:.1f}s")

    r = run(splatform, "cache", "sh", "-c", 'redis-cli -u "$REDIS_URL" set greeting again')
    assert r.code == 0, r.text
    t0 = time.monotonic()
    r = splatform.ssh("alice", "restart", APP, "cache", timeout=300)
    took = time.monotonic() - t0
    assert r.code == 0, r.text
    r = run(splatform, "cache", "sh", "-c", 'redis-cli -u "$REDIS_URL" get greeting')
    assert r.code == 0, r.text
    assert r.out.strip() == "again"
    print(f"restart of cache (redis, swarm runtime): {took:.1f}s")


def test_restart_of_a_data_service_that_never_serves_fails_in_one_line(
        splatform, cluster, nodes_engines, pushed):  # noqa: F811
    # A standby without a primary runs on and refuses every client ("hot
    # standby mode is disabled"): running on its node, never serving.
    inst = active(splatform, APP)["db.0"]
    engine = nodes_engines[data_node(cluster, splatform, APP, "db")]

    def in_task(script: str) -> None:
        task = engine.containers.list(
            filters={"label": f"dotcloud.instance={inst.spec.instance_name}"})
        assert len(task) == 1, task
        code, out = task[0].exec_run(["sh", "-c", script])
        assert code == 0, out

    in_task("echo hot_standby=off >> /data/pgdata/postgresql.conf && "
            ": > /data/pgdata/standby.signal")
    try:
        r = splatform.ssh("alice", "restart", APP, "db", timeout=300)
        assert r.code != 0
        lines = [line for line in r.err.splitlines() if "not accepting" in line]
        assert len(lines) == 1, r.text
        assert "db.0 not accepting connections 65s after the restart on node n" in lines[0]
        assert f"(port {inst.port}); see: logs {APP} db.0" in lines[0]
    finally:
        in_task("rm -f /data/pgdata/standby.signal && "
                "sed -i '/^hot_standby=off$/d' /data/pgdata/postgresql.conf")
    # Put right, it restarts and serves.
    r = splatform.ssh("alice", "restart", APP, "db", timeout=300)
    assert r.code == 0, r.text
    got = psql_from_n1(splatform, "SELECT 1")
    assert got.returncode == 0, got.stderr
