"""Issue 3: a push never costs a user a request. Real pushes, real HTTP, under load."""
import json
import os
import signal
import subprocess
import time

import pytest
from loadgen import Load
from platform_helpers import git_repo, python_app

pytestmark = pytest.mark.slow

ENV_APP = '''
import os
def application(environ, start_response):
    body = ("greeting=" + os.environ.get("GREETING", "none")).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


def fresh_bodies(platform, host, n=20):
    return {platform.get(host)[1] for _ in range(n)}


def backends(platform, host):
    routes = json.loads((platform.data / "run" / "routes.json").read_text())["routes"]
    return routes[host]["backends"]


def test_five_pushes_under_load_lose_nothing(platform, tmp_path):
    repo = git_repo(tmp_path / "zd5", python_app("zd5 v0"))
    assert platform.push("alice", repo, "zd5").code == 0
    with Load(platform.http_port, "zd5.localhost", clients=6) as load:
        for i in range(1, 6):
            git_repo(repo, python_app(f"zd5 v{i}"), f"v{i}")
            r = platform.push("alice", repo, "zd5")
            assert r.code == 0, r.text
            assert fresh_bodies(platform, "zd5.localhost") == {f"zd5 v{i}"}
    assert load.ok > 100
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) <= {f"zd5 v{i}" for i in range(6)}


def test_crashing_release_under_load_keeps_old(platform, tmp_path):
    repo = git_repo(tmp_path / "zdc", python_app("zdc good"))
    assert platform.push("alice", repo, "zdc").code == 0
    with Load(platform.http_port, "zdc.localhost", clients=4) as load:
        git_repo(repo, {"wsgi.py": "raise SystemExit(3)\n"}, "crash")
        r = platform.push("alice", repo, "zdc")
        assert r.code != 0 and "deploy failed" in r.err
    assert load.failures == 0, load.errors[:5]
    assert set(load.bodies) == {"zdc good"}
    assert fresh_bodies(platform, "zdc.localhost") == {"zdc good"}



def test_release_dying_on_every_request_fails_without_waiting_out_the_timeout(platform, tmp_path):
    # gunicorn's master stays up and forks a new worker each time one dies:
    # no exit to see, but every check has its connection cut without an answer
    repo = git_repo(tmp_path / "zdd", python_app("zdd good"))
    assert platform.push("alice", repo, "zdd").code == 0
    dying = "import os\ndef application(environ, start_response):\n    os._exit(1)\n"
    git_repo(repo, {"wsgi.py": dying}, "dies on every request")
    r = platform.push("alice", repo, "zdd")
    assert r.code != 0
    assert ("deploy failed: www.0 not responsive: it closed the connection without an "
            "answer, 3 checks in a row") in r.err, r.text
    assert fresh_bodies(platform, "zdd.localhost") == {"zdd good"}

def test_scale_up_and_down_under_load(platform, tmp_path):
    repo = git_repo(tmp_path / "zds", python_app("zds"))
    assert platform.push("alice", repo, "zds").code == 0
    with Load(platform.http_port, "zds.localhost", clients=4) as load:
        r = platform.ssh("alice", "scale", "zds", "www=3")
        assert r.code == 0, r.text
        assert len(backends(platform, "zds.localhost")) == 3
        r = platform.ssh("alice", "scale", "zds", "www:instances=1")
        assert r.code == 0, r.text
        assert len(backends(platform, "zds.localhost")) == 1
    assert load.failures == 0, load.errors[:5]
    assert load.ok > 50


def test_rollback_under_load_without_build(platform, tmp_path):
    repo = git_repo(tmp_path / "zdr", python_app("zdr v1"))
    assert platform.push("alice", repo, "zdr").code == 0
    git_repo(repo, python_app("zdr v2"), "v2")
    assert platform.push("alice", repo, "zdr").code == 0
    with Load(platform.http_port, "zdr.localhost", clients=4) as load:
        r = platform.ssh("alice", "rollback", "zdr")
        assert r.code == 0, r.text
        assert "Building" not in r.text
        assert fresh_bodies(platform, "zdr.localhost") == {"zdr v1"}
    assert load.failures == 0, load.errors[:5]


def test_var_set_is_a_zero_downtime_release(platform, tmp_path):
    repo = git_repo(tmp_path / "zdv", {"wsgi.py": ENV_APP, "requirements.txt": ""})
    assert platform.push("alice", repo, "zdv").code == 0
    with Load(platform.http_port, "zdv.localhost", clients=4) as load:
        r = platform.ssh("alice", "var", "set", "zdv", "GREETING=hello world")
        assert r.code == 0, r.text
        assert fresh_bodies(platform, "zdv.localhost") == {"greeting=hello world"}
    assert load.failures == 0, load.errors[:5]


def test_deployer_killed_mid_deploy(platform, tmp_path):
    """kill -9 of the SSH daemon during a push: the old generation keeps serving,
    and the next push deploys (no stale lock)."""
    slow = python_app("zdk v2")
    slow["postinstall"] = "#!/bin/sh\nsleep 3\n"
    repo = git_repo(tmp_path / "zdk", python_app("zdk v1"))
    assert platform.push("alice", repo, "zdk").code == 0
    git_repo(repo, slow, "slow postinstall")
    with Load(platform.http_port, "zdk.localhost", clients=3) as load:
        proc = subprocess.Popen(["git", "push", platform.remote("zdk"), "main"], cwd=repo,
                                env=platform.git_env("alice"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        for line in proc.stdout:
            if b"Running postinstall" in line:
                break
        pid = json.loads((platform.data / "run" / "ssh.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        proc.wait(30)
        platform.wait_listening()
        # The orphaned pipeline may still finish its deploy: old or new, never an error.
        assert fresh_bodies(platform, "zdk.localhost") <= {"zdk v1", "zdk v2"}
        deadline = time.monotonic() + 120
        while subprocess.run(["pgrep", "-f", "hooks.pipeline .* push zdk "],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the orphaned pipeline never ended"
            time.sleep(0.2)
    assert load.failures == 0, load.errors[:5]
    # Whichever way it ended, the branch names what serves.
    served = fresh_bodies(platform, "zdk.localhost")
    heads = subprocess.run(["git", "ls-remote", platform.remote("zdk"), "refs/heads/main"],
                           env=platform.git_env("alice"), capture_output=True, text=True,
                           timeout=60).stdout.split()[0]
    local = subprocess.run(["git", "rev-parse", "HEAD", "HEAD~1"], cwd=repo, capture_output=True,
                           text=True).stdout.split()
    assert (served, heads) in (({"zdk v2"}, local[0]), ({"zdk v1"}, local[1])), (served, heads)
    git_repo(repo, python_app("zdk v3"), "v3")
    r = platform.push("alice", repo, "zdk")
    assert r.code == 0, r.text
    assert fresh_bodies(platform, "zdk.localhost") == {"zdk v3"}
