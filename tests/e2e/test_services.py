"""Issue 7 through a real push: several services, hooks, environment, types."""
import json

import pytest
from platform_helpers import git_repo

pytestmark = pytest.mark.slow

ENV_WSGI = '''
import json, os
def application(environ, start_response):
    home = os.environ["HOME"]
    data = {k: v for k, v in os.environ.items() if k.startswith(("DOTCLOUD_", "MODE", "PORT", "DYNO"))}
    data["env_json"] = json.load(open(os.path.join(home, "environment.json")))["DOTCLOUD_PROJECT"]
    data["env_yml"] = os.path.exists(os.path.join(home, "environment.yml"))
    data["prebuilt"] = open("prebuilt.txt").read().strip()
    data["postbuilt"] = open("postbuilt.txt").read().strip()
    data["postinstalled"] = open(os.path.join(home, "postinstalled.txt")).read().strip()
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''

STACK = {
    "dotcloud.yml": """\
www:
  type: python
  approot: web
  environment:
    MODE: production
  prebuild: echo pre > prebuilt.txt
  postbuild: echo post > postbuilt.txt
worker:
  type: python-worker
  approot: jobs
  processes:
    loop: python loop.py
static:
  type: static
  approot: site
""",
    "web/wsgi.py": ENV_WSGI,
    "web/requirements.txt": "",
    "web/postinstall": "#!/bin/sh\necho installed > \"$HOME/postinstalled.txt\"\n",
    "jobs/loop.py": "import time\nprint('worker up', flush=True)\nwhile True:\n    time.sleep(1)\n",
    "jobs/requirements.txt": "",
    "site/index.html": "<p>static service</p>",
}


def test_three_service_stack(platform, tmp_path):
    repo = git_repo(tmp_path / "stack", STACK)   # git_repo makes postinstall executable
    r = platform.push("alice", repo, "stack")
    assert r.code == 0, r.text
    for line in ("[www] Build started", "[worker] Build started", "[static] Build started",
                 "[www.0] Running postinstall script...", "[worker.0] Launching..."):
        assert line in r.err, line
    status, body, _ = platform.get("stack.localhost")
    assert status == 200, body
    env = json.loads(body)
    assert env["DOTCLOUD_PROJECT"] == "stack"
    assert env["DOTCLOUD_SERVICE_NAME"] == "www"
    assert env["DOTCLOUD_SERVICE_ID"] == "0"
    assert env["DYNO"] == "web.1"           # Heroku's and Dokku's: PROCESS.N
    assert env["DOTCLOUD_ENVIRONMENT"]
    assert env["MODE"] == "production"
    assert env["PORT"].isdigit()
    assert env["env_json"] == "stack" and env["env_yml"]
    assert (env["prebuilt"], env["postbuilt"], env["postinstalled"]) == ("pre", "post", "installed")
    status, body, _ = platform.get("static.stack.localhost")
    assert status == 200 and "static service" in body
    log = (platform.data / "logs" / "stack" / "worker.0.log").read_text()
    assert "worker up" in log


@pytest.mark.parametrize("yml, message", [
    ("www:\n  type: python\n  instances: zero\n", "dotcloud.yml line 3:"),
    ("www:\n  type: cobol\n", "dotcloud.yml line 2:"),
    ("www: [unclosed\n", "dotcloud.yml line"),
    ("www:\n  approot: ../../etc\n  type: static\n", "dotcloud.yml line 2:"),
])
def test_malformed_buildfile_refused_at_push(platform, tmp_path, yml, message):
    repo = git_repo(tmp_path / "bad", {"dotcloud.yml": yml, "index.html": "x"})
    r = platform.push("alice", repo, "badyml")
    assert r.code != 0
    assert "[remote rejected]" in r.err and message in r.err, r.err


def test_unknown_key_is_warned(platform, tmp_path):
    repo = git_repo(tmp_path / "warn", {"dotcloud.yml": "www:\n  type: static\n  instnces: 2\n",
                                        "index.html": "warned"})
    r = platform.push("alice", repo, "warnyml")
    assert r.code == 0, r.text
    assert "unknown key 'instnces'" in r.err


@pytest.mark.parametrize("hook, expect", [
    ("prebuild: exit 3", "prebuild failed"),
    ("postbuild: 'echo broken-postbuild; exit 4'", "postbuild failed"),
])
def test_failing_build_hook_fails_push(platform, tmp_path, hook, expect):
    repo = git_repo(tmp_path / "hk", {"dotcloud.yml": f"www:\n  type: static\n  {hook}\n",
                                      "index.html": "x"})
    r = platform.push("alice", repo, "hookfail")
    assert r.code != 0
    assert expect in r.err, r.err


def test_failing_postinstall_fails_push(platform, tmp_path):
    repo = git_repo(tmp_path / "pi", {"index.html": "x",
                                      "postinstall": "#!/bin/sh\necho 'db migration exploded'\nexit 5\n"})
    r = platform.push("alice", repo, "pifail")
    assert r.code != 0
    assert "postinstall failed" in r.err and "db migration exploded" in r.err, r.err


def test_nodejs_app(platform, tmp_path):
    server = ("const http = require('http');\n"
              "http.createServer((q, s) => s.end('node ok ' + process.env.DOTCLOUD_SERVICE_NAME))"
              ".listen(process.env.PORT, '127.0.0.1');\n")
    repo = git_repo(tmp_path / "node", {"package.json": '{"name": "n", "version": "1.0.0"}',
                                        "server.js": server})
    r = platform.push("alice", repo, "nodeapp")
    assert r.code == 0, r.text
    assert platform.get("nodeapp.localhost")[:2] == (200, "node ok www")


def test_procfile_is_honoured(platform, tmp_path):
    wsgi = ("def application(e, s):\n    s('200 OK', [])\n    return [b'procfile ok']\n")
    repo = git_repo(tmp_path / "pf", {
        "wsgi.py": wsgi, "requirements.txt": "",
        "Procfile": "web: python -m gunicorn --bind 127.0.0.1:$PORT wsgi:application\n"})
    r = platform.push("alice", repo, "procfile")
    assert r.code == 0, r.text
    assert platform.get("procfile.localhost")[:2] == (200, "procfile ok")
