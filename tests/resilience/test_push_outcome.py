"""A push's outcome does not depend on its client: the branch moves if and only
if the new release is active, whether the client hangs up or the pipeline is
killed after its router switch (SPEC 10)."""
import os
import signal
import subprocess
import threading
import time

import pytest
from platform_helpers import git_repo
from resilience_helpers import wait_until

from dotcloud.state import Store

pytestmark = pytest.mark.slow

SLOW_APP = '''
import time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ["QUERY_STRING"] or 0))
    body = {body!r}.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def app_files(body: str) -> dict:
    return {"wsgi.py": SLOW_APP.format(body=body), "requirements.txt": ""}


def branch(platform, app) -> str | None:
    out = subprocess.run(["git", "ls-remote", platform.remote(app), "refs/heads/main"],
                         env=platform.git_env("alice"), capture_output=True, text=True,
                         timeout=60).stdout
    return out.split()[0] if out.strip() else None


def head(repo) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()


def start_push(platform, repo, app) -> subprocess.Popen:
    return subprocess.Popen(["git", "push", "--progress", platform.remote(app), "main"], cwd=repo,
                            env=platform.git_env("alice"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def read_until(proc, marker: str, timeout: float = 120) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    for raw in proc.stdout:
        lines.append(raw.decode(errors="replace"))
        if marker in lines[-1]:
            return lines
        assert time.monotonic() < deadline, "".join(lines)
    raise AssertionError(f"{marker!r} never came:\n" + "".join(lines))


def releases(platform, app):
    store = Store(platform.data / "dotcloud.db")
    try:
        return store.releases(app), store.generations(app, ("starting", "draining"))
    finally:
        store.close()


def settled(platform, app):
    rels, _ = releases(platform, app)
    return rels[-1].status in ("active", "failed") and rels


def test_a_client_that_hangs_up_mid_build_still_gets_its_push_deployed(own_platform, tmp_path):
    p, app = own_platform, "hangup"
    repo = git_repo(tmp_path / "r", app_files("v1"))
    assert p.push("alice", repo, app).code == 0
    git_repo(repo, {"wsgi.py": app_files("v2")["wsgi.py"],
                    "dotcloud.yml": "www:\n  type: python\n  prebuild: sleep 2\n"}, "v2")
    push = start_push(p, repo, app)
    read_until(push, "Build started")
    os.killpg(push.pid, signal.SIGKILL)
    push.wait()
    rels = wait_until(lambda: settled(p, app), 120, "the pipeline's end")
    assert rels[-1].status == "active" and rels[-1].revision == head(repo)
    assert branch(p, app) == head(repo)
    assert p.get(f"{app}.localhost")[:2] == (200, "v2")


def test_a_pipeline_killed_after_the_switch_leaves_branch_and_release_together(
        own_platform, tmp_path):
    p, app = own_platform, "killswitch"
    repo = git_repo(tmp_path / "r", app_files("v1"))
    assert p.push("alice", repo, app).code == 0
    # A request in flight on v1 holds the drain open after the switch.
    slow = threading.Thread(target=p.get, args=(f"{app}.localhost", "/slow?6", 30))
    slow.start()
    time.sleep(0.5)
    git_repo(repo, app_files("v2"), "v2")
    push = start_push(p, repo, app)
    read_until(push, "Successfully deployed build revision")
    pids = subprocess.run(["pgrep", "-f", f"hooks.pipeline .* push {app} "],
                          capture_output=True, text=True).stdout.split()
    assert pids, "the pipeline was not found running"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    rest = push.stdout.read().decode(errors="replace")
    assert push.wait(60) == 0, rest           # the store says v2 is active: the push is ok
    slow.join()
    assert branch(p, app) == head(repo)
    rels, stale = releases(p, app)
    assert rels[-1].status == "active" and rels[-1].revision == head(repo)
    assert stale == [], "a generation was left starting or draining"
    assert p.get(f"{app}.localhost")[:2] == (200, "v2")


def test_a_pipeline_killed_mid_build_leaves_the_old_state_and_no_build(own_platform, tmp_path):
    p, app = own_platform, "killbuild"
    repo = git_repo(tmp_path / "r", app_files("v1"))
    assert p.push("alice", repo, app).code == 0
    old = head(repo)
    git_repo(repo, {"wsgi.py": app_files("v2")["wsgi.py"],
                    "dotcloud.yml": "www:\n  type: python\n  prebuild: sleep 5\n"}, "v2")
    push = start_push(p, repo, app)
    read_until(push, "Build started")
    pids = subprocess.run(["pgrep", "-f", f"hooks.pipeline .* push {app} "],
                          capture_output=True, text=True).stdout.split()
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    rest = push.stdout.read().decode(errors="replace")
    assert push.wait(60) != 0
    assert "[remote rejected] main -> main" in rest, rest
    assert branch(p, app) == old
    rels, _ = releases(p, app)
    assert rels[-1].status == "failed" and "interrupted" in rels[-1].reason
    assert not (p.data / "releases" / app / f"v{rels[-1].number}").exists()
    assert p.get(f"{app}.localhost")[:2] == (200, "v1")
    # The next push goes through as usual.
    git_repo(repo, {"dotcloud.yml": "www:\n  type: python\n"}, "v3")
    assert p.push("alice", repo, app).code == 0
    assert p.get(f"{app}.localhost")[:2] == (200, "v2")
