"""Data services through real pushes: redis and postgresql beside a python app,
their connection variables, and their data and processes kept across pushes."""
import json
import socket
import subprocess
from dataclasses import replace

import pytest
from platform_helpers import git_repo, open_dir

from buildpacks import build_service
from buildpacks.base import BuildContext
from buildpacks.spec import ServiceSpec
from dotcloud.desired import DataService, InstanceSpec, ProcessSpec, ServiceManifest
from dotcloud.errors import BuildError, DeployError
from dotcloud.settings import load
from dotcloud.state import Store
from hooks import datastores
from runtime.executor import HOST

pytestmark = pytest.mark.slow

# The app talks to redis over a raw socket (RESP), no client library.
WSGI = '''
import json, os, socket
VERSION = {version!r}

def redis(*args):
    url = os.environ["DOTCLOUD_CACHE_REDIS_URL"]
    with socket.create_connection((os.environ["DOTCLOUD_CACHE_REDIS_HOST"],
                                   int(os.environ["DOTCLOUD_CACHE_REDIS_PORT"])), 5) as s:
        out = []
        for cmd in (("AUTH", os.environ["DOTCLOUD_CACHE_REDIS_PASSWORD"]), args):
            s.sendall(("*%d\\r\\n" % len(cmd) + "".join(
                "$%d\\r\\n%s\\r\\n" % (len(a), a) for a in cmd)).encode())
        f = s.makefile("rb")
        for _ in range(2):
            line = f.readline().decode().rstrip()
            if line.startswith("$") and line != "$-1":
                line = f.read(int(line[1:]) + 2).decode()[:-2]
            out.append(line)
        return out[1]

def application(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/set":
        body = redis("SET", "greeting", query)
    elif path == "/get":
        body = redis("GET", "greeting")
    elif path == "/pid":
        body = [l for l in redis("INFO", "server").splitlines() if l.startswith("process_id:")][0]
    else:
        body = json.dumps(dict({{k: v for k, v in os.environ.items()
                                if k.startswith("DOTCLOUD_")}}, version=VERSION))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''

BUILDFILE = """\
www:
  type: python
  approot: web
cache:
  type: redis
db:
  type: postgresql
"""


def files(version: str, buildfile: str = BUILDFILE) -> dict:
    return {"dotcloud.yml": buildfile, "web/wsgi.py": WSGI.format(version=version),
            "web/requirements.txt": ""}


def psql(url: str, sql: str) -> str:
    r = subprocess.run(["psql", url, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10"})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def app_get(platform, path: str) -> str:
    status, body, _ = platform.get("datastack.localhost", path)
    assert status == 200, body
    return body


def test_data_services_keep_their_data_and_processes(platform, tmp_path):
    repo = git_repo(tmp_path / "datastack", files("one"))
    r = platform.push("alice", repo, "datastack")
    assert r.code == 0, r.err
    assert "[www.0] Re-routing traffic" in r.text and "[db.0] Re-routing" not in r.text
    env = json.loads(app_get(platform, "/"))
    url = env["DOTCLOUD_DB_POSTGRESQL_URL"]
    assert url == (f"postgresql://{env['DOTCLOUD_DB_POSTGRESQL_LOGIN']}:"
                   f"{env['DOTCLOUD_DB_POSTGRESQL_PASSWORD']}@127.0.0.1:"
                   f"{env['DOTCLOUD_DB_POSTGRESQL_PORT']}/postgres")
    assert env["DOTCLOUD_CACHE_REDIS_URL"].startswith("redis://default:")
    assert env["DOTCLOUD_DB_POSTGRESQL_HOST"] == env["DOTCLOUD_CACHE_REDIS_HOST"] == "127.0.0.1"
    # The password is really required.
    bad = subprocess.run(["psql", url.replace(env["DOTCLOUD_DB_POSTGRESQL_PASSWORD"], "wrong"),
                          "-c", "select 1"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    assert app_get(platform, "/set?hello") == "+OK"
    psql(url, "CREATE TABLE notes(body text); INSERT INTO notes VALUES ('kept')")
    redis_pid = app_get(platform, "/pid")
    pg_started = psql(url, "SELECT pg_postmaster_start_time()")
    datadir = platform.data / "services" / "datastack"
    assert oct((datadir / "db" / "password").stat().st_mode & 0o777) == "0o600"

    # New www code: the data services are neither restarted nor emptied.
    git_repo(repo, files("two"))
    r = platform.push("alice", repo, "datastack")
    assert r.code == 0, r.err
    assert "[cache.0] Definition unchanged: kept running, not restarted" in r.err
    assert json.loads(app_get(platform, "/"))["version"] == "two"
    assert json.loads(app_get(platform, "/"))["DOTCLOUD_DB_POSTGRESQL_URL"] == url
    assert app_get(platform, "/pid") == redis_pid
    assert app_get(platform, "/get") == "hello"
    assert psql(url, "SELECT pg_postmaster_start_time()") == pg_started
    assert psql(url, "SELECT body FROM notes") == "kept"

    # A deploy that fails leaves them running as they were.
    git_repo(repo, {"web/wsgi.py": "raise SystemExit(3)\n"})
    r = platform.push("alice", repo, "datastack")
    assert r.code != 0 and "deploy failed" in r.err
    assert app_get(platform, "/pid") == redis_pid
    assert psql(url, "SELECT pg_postmaster_start_time()") == pg_started

    # A changed definition restarts the server on the same data, even with a
    # client connected (postgres would wait for it in a smart shutdown).
    idle = subprocess.Popen(["psql", url, "-X"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    git_repo(repo, files("three", BUILDFILE.replace("redis\n", "redis\n  environment: {A: b}\n")
                                           .replace("postgresql\n", "postgresql\n  environment: {A: b}\n")))
    r = platform.push("alice", repo, "datastack")
    idle.kill()
    assert r.code == 0, r.err
    assert "[cache.0] Definition changed" in r.err and "[db.0] Definition changed" in r.err
    assert app_get(platform, "/pid") != redis_pid
    assert json.loads(app_get(platform, "/"))["DOTCLOUD_DB_POSTGRESQL_URL"] == url
    assert psql(url, "SELECT pg_postmaster_start_time()") != pg_started
    assert app_get(platform, "/get") == "hello"
    assert psql(url, "SELECT body FROM notes") == "kept"

    db_log = (platform.data / "logs" / "datastack" / "db.0.log").read_text()
    assert "received fast shutdown request" in db_log and "SIGKILL" not in db_log

    r = platform.ssh("alice", "destroy", "datastack", "--force")
    assert r.code == 0, r.err
    assert not datadir.exists()


# The parts on their own: the deployer's preparation and bookkeeping.

@pytest.fixture
def data():
    """A data directory the app's own user may reach (pytest's is 0700)."""
    return open_dir()


def test_password_is_made_once_and_kept(data):
    settings = load(data)
    creds = datastores.prepare(settings, "app", "cache", "redis")
    again = datastores.prepare(settings, "app", "cache", "redis")
    assert creds == again and len(creds.password) >= 24
    root = datastores.data_dir(settings, "app", "cache")
    assert root == data / "services" / "app" / "cache"
    assert (root / "password").stat().st_mode & 0o777 == 0o600
    assert f"requirepass {creds.password}\n" in (root / "redis.conf").read_text()
    assert datastores.connection_env("cache", "redis", 7000, creds) == {
        "DOTCLOUD_CACHE_REDIS_URL": f"redis://default:{creds.password}@127.0.0.1:7000",
        "DOTCLOUD_CACHE_REDIS_HOST": "127.0.0.1", "DOTCLOUD_CACHE_REDIS_PORT": "7000",
        "DOTCLOUD_CACHE_REDIS_LOGIN": "default", "DOTCLOUD_CACHE_REDIS_PASSWORD": creds.password}


def test_postgres_cluster_is_initialised_once(data):
    settings = load(data)
    datastores.prepare(settings, "app", "db", "postgresql")
    version = data / "services" / "app" / "db" / "pgdata" / "PG_VERSION"
    marker = version.parent / "marker"
    marker.write_text("data")
    datastores.prepare(settings, "app", "db", "postgresql")
    assert marker.exists() and version.exists()


def test_postgres_speaks_tls_with_a_certificate_made_once(data):
    settings = load(data)
    datastores.prepare(settings, "app", "db", "postgresql")
    root = datastores.data_dir(settings, "app", "db")
    cert = (root / "server.crt").read_bytes()
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert (root / "server.key").stat().st_mode & 0o777 == 0o600
    assert (root / "tls.conf").read_text() == (
        f"ssl = on\nssl_cert_file = '{root}/server.crt'\nssl_key_file = '{root}/server.key'\n")
    datastores.prepare(settings, "app", "db", "postgresql")
    assert (root / "server.crt").read_bytes() == cert
    conf = (root / "pgdata" / "postgresql.conf").read_text()
    assert conf.count(f"\ninclude_if_exists = '{root}/tls.conf'\n") == 1


def test_failing_initdb_fails_the_deploy(data):
    settings = load(data)
    root = datastores.data_dir(settings, "app", "db")
    root.mkdir(parents=True)
    (root / "password").write_text("")        # initdb refuses an empty password
    with pytest.raises(DeployError, match=r"^initdb failed \(exit 1\): "):
        datastores.prepare(settings, "app", "db", "postgresql")


def test_missing_server_is_refused_at_build(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    ctx = BuildContext(app="app", service=ServiceSpec(name="cache", type="redis"), src=tmp_path,
                       release_dir=tmp_path, cache_dir=tmp_path, env={}, log=print, executor=HOST)
    with pytest.raises(BuildError, match="type redis needs redis-server on the platform host"):
        build_service(ctx)


@pytest.mark.parametrize("kind, process", [("redis", "redis"), ("postgresql", "postgresql")])
def test_servers_run_elsewhere_need_none_on_the_host(tmp_path, monkeypatch, kind, process):
    # The swarm runtime's data image runs them: the manager need not have them.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("buildpacks.datastores.PG_GLOB", str(tmp_path / "none" / "*" / "bin"))
    ctx = BuildContext(app="app", service=ServiceSpec(name="db", type=kind), src=tmp_path,
                       release_dir=tmp_path, cache_dir=tmp_path, env={}, log=print,
                       executor=HOST, servers_on_host=False)
    result = build_service(ctx)
    assert list(result.processes) == [process] and not result.http
    ctx = replace(ctx, servers_on_host=True)
    with pytest.raises(BuildError, match=f"type {kind} needs .* on the platform host"):
        build_service(ctx)


def test_definition_compares_spec_and_processes():
    info = ServiceManifest("cache", {"type": "redis"}, "/a", False, {"redis": ["redis-server"]})
    assert datastores.same_definition(info, replace(info, src="/b"))
    assert not datastores.same_definition(None, info)
    assert not datastores.same_definition(info, replace(info, spec={"type": "redis", "x": 1}))
    assert not datastores.same_definition(info, replace(info, processes={"redis": ["other"]}))


def _data_instance(store, gen, service, born):
    spec = InstanceSpec(app="app", service=service, number=0, generation=born, port=7000 + gen,
                        service_type="redis",
                        processes=[ProcessSpec("redis", ["redis-server"], "/")], env={},
                        home=f"/h/g{born}-{service}.0", log=f"app/{service}.0.log",
                        data_service=DataService("redis", born))
    return store.add_instance("app", gen, service, 0, 7000 + gen, spec)


def test_unfinished_deploy_hands_kept_servers_back(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    old, new = store.new_generation("app", 1).id, store.new_generation("app", 2).id
    kept = _data_instance(store, old, "cache", old)
    halted = _data_instance(store, old, "db", old)
    fresh = _data_instance(store, new, "db", new)
    store.move_instances([kept.id], new)
    store.set_desired([kept.id, fresh.id], "run")
    store.set_desired([halted.id], "stop")
    asked = []
    datastores.restore(store, "app", new, old, lambda ids: asked.append(ids) or True)
    assert asked == [[fresh.id]]
    assert store.instance(kept.id).generation == old
    assert store.instance(fresh.id).generation == new
    assert store.instance(halted.id).desired == "run"


def test_old_server_still_running_is_never_restarted_beside_the_new(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    old, new = store.new_generation("app", 1).id, store.new_generation("app", 2).id
    halted = _data_instance(store, old, "db", old)
    fresh = _data_instance(store, new, "db", new)
    store.set_desired([halted.id], "stop")
    assert not datastores.wait_stopped(store, [fresh.id], timeout=0.2)
    datastores.restore(store, "app", new, old, lambda ids: False)
    assert store.instance(halted.id).desired == "stop"


def test_listening_check_needs_a_server(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert not datastores.wait_listening(port, timeout=0.3)   # bound, not listening
        server.listen()
        assert datastores.wait_listening(port, timeout=5)
