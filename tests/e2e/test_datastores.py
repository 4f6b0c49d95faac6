"""Data services through real pushes: redis and postgresql beside a python app,
their connection variables, and their data and processes kept across pushes."""
import json
import subprocess

import pytest
from platform_helpers import git_repo

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

    # A changed definition restarts the server on the same data.
    git_repo(repo, files("three", BUILDFILE.replace(
        "  type: redis\n", "  type: redis\n  environment: {TUNED: 'yes'}\n")))
    r = platform.push("alice", repo, "datastack")
    assert r.code == 0, r.err
    assert "[cache.0] Definition changed" in r.err
    assert app_get(platform, "/pid") != redis_pid
    assert app_get(platform, "/get") == "hello"
    assert psql(url, "SELECT body FROM notes") == "kept"

    r = platform.ssh("alice", "destroy", "datastack", "--force")
    assert r.code == 0, r.err
    assert not datadir.exists()
