"""Issue 2: git push to a serving app, end to end, on real parts."""
import subprocess
import time

import pytest
from platform_helpers import git_repo, make_key, python_app

pytestmark = pytest.mark.slow

SPEC_LINES = [
    "---> Building the application...",
    "[www] Build started for revision",
    "[www] Build completed successfully",
    "---> Application build is done",
    "---> Initializing new services... (This may take a few minutes)",
    "---> Using default scaling for service www (1 instance(s)).",
    "[www.0] Initializing...",
    "[www.0] Service initialized",
    "---> All services have been initialized. Deploying code...",
    "[www.0] Deploying build revision",
    "[www.0] Launching...",
    "[www.0] Waiting for the instance to become responsive...",
    "[www.0] Re-routing traffic to the new build...",
    "[www.0] Successfully deployed build revision",
    "---> Deploy finished",
    "---> Application fully deployed",
]


def remote_ref(platform, app, branch="main"):
    r = subprocess.run(["git", "ls-remote", platform.remote(app), f"refs/heads/{branch}"],
                       env=platform.git_env("alice"), capture_output=True, text=True, timeout=60)
    return r.stdout.split()[0] if r.stdout.strip() else None


def head(repo):
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True).stdout.strip()


def test_push_python_app_then_update(platform, tmp_path):
    # A requirements file no other test has, so this first build is a clean one.
    repo = git_repo(tmp_path / "hello", python_app("hello v1", "# the hello app\n"))
    t0 = time.monotonic()
    r = platform.push("alice", repo, "hello")
    first = time.monotonic() - t0
    assert r.code == 0, r.text
    positions = [r.err.find("remote: " + line) for line in SPEC_LINES]
    assert all(p >= 0 for p in positions), [l for l, p in zip(SPEC_LINES, positions) if p < 0]
    assert positions == sorted(positions), "progress lines out of order"
    assert f"---> http://hello.localhost:{platform.http_port}/" in r.err
    assert "(clean build)" in r.err
    status, body, _ = platform.get(f"hello.localhost:{platform.http_port}")
    assert (status, body) == (200, "hello v1")

    git_repo(repo, python_app("hello v2", "# the hello app\n"), "v2")
    t0 = time.monotonic()
    r = platform.push("alice", repo, "hello")
    second = time.monotonic() - t0
    assert r.code == 0, r.text
    assert "(incremental build)" in r.err
    assert platform.get("hello.localhost") [:2] == (200, "hello v2")
    print(f"first push {first:.2f}s, second push {second:.2f}s")


def test_static_app(platform, tmp_path):
    repo = git_repo(tmp_path / "site", {"index.html": "<h1>static ok</h1>", "style.css": "b{}"})
    r = platform.push("alice", repo, "site")
    assert r.code == 0, r.text
    status, body, headers = platform.get("site.localhost")
    assert status == 200 and "static ok" in body
    assert headers["Content-Type"].startswith("text/html")
    status, _, headers = platform.get("site.localhost", "/style.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")


def test_failed_build_keeps_branch_and_old_release(platform, tmp_path):
    repo = git_repo(tmp_path / "fb", python_app("fb good"))
    assert platform.push("alice", repo, "fb").code == 0
    good = head(repo)
    git_repo(repo, python_app("fb bad", "this-package-does-not-exist-dotcloud-test==9.9\n"), "bad")
    r = platform.push("alice", repo, "fb")
    assert r.code != 0
    assert "[remote rejected] main -> main (build failed:" in r.text, r.text
    assert remote_ref(platform, "fb") == good
    assert platform.get("fb.localhost")[:2] == (200, "fb good")


def test_app_that_never_answers_is_rejected(platform, tmp_path):
    repo = git_repo(tmp_path / "na", python_app("na good"))
    assert platform.push("alice", repo, "na").code == 0
    good = head(repo)
    git_repo(repo, {"wsgi.py": "import this_module_does_not_exist\n"}, "crash")
    r = platform.push("alice", repo, "na")
    assert r.code != 0
    assert "[remote rejected] main -> main (deploy failed: www.0" in r.text, r.text
    assert "this_module_does_not_exist" in r.err, "the instance's last log lines are shown"
    assert remote_ref(platform, "na") == good
    assert platform.get("na.localhost")[:2] == (200, "na good")


def test_unknown_key_is_rejected(platform, tmp_path):
    stranger = make_key(tmp_path, "stranger")
    repo = git_repo(tmp_path / "s", python_app("x"))
    env = dict(platform.git_env("alice"),
               GIT_SSH_COMMAND=platform.ssh_command("alice").replace(str(platform.keys["alice"]),
                                                                     str(stranger)))
    r = subprocess.run(["git", "push", platform.remote("stranger"), "HEAD:main"], cwd=repo,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Permission denied (publickey)" in r.stderr
    assert not (platform.data / "repos" / "stranger.git").exists()


@pytest.mark.parametrize("name", ["../x", "a;b", "/etc/passwd", "UPPER", "x" * 41, "a b"])
def test_hostile_app_names_are_refused(platform, tmp_path, name):
    repo = git_repo(tmp_path / "h", python_app("x"))
    before = set((platform.data / "repos").iterdir())
    outside = set(platform.data.parent.iterdir())
    r = subprocess.run(["git", "push", f"ssh://dotcloud@127.0.0.1:{platform.ssh_port}/{name}",
                        "HEAD:main"], cwd=repo, env=platform.git_env("alice"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "invalid app name" in r.stderr
    assert set((platform.data / "repos").iterdir()) == before
    assert set(platform.data.parent.iterdir()) == outside


def test_other_branch_is_stored_not_deployed(platform, tmp_path):
    repo = git_repo(tmp_path / "br", python_app("br main"))
    assert platform.push("alice", repo, "br").code == 0
    git_repo(repo, python_app("br feature"), "feature")
    r = platform.push("alice", repo, "br", branch="feature")
    assert r.code == 0, r.text
    assert "Building the application" not in r.err
    assert remote_ref(platform, "br", "feature") == head(repo)
    assert platform.get("br.localhost")[:2] == (200, "br main")


def test_concurrent_pushes_wait_for_each_other(platform, tmp_path):
    repo = git_repo(tmp_path / "cc", python_app("cc v1"))
    assert platform.push("alice", repo, "concur").code == 0
    slow = python_app("cc main")
    slow["postinstall"] = "#!/bin/sh\nsleep 2\n"
    git_repo(repo, slow, "slow")
    first = subprocess.Popen(["git", "push", platform.remote("concur"), "main"], cwd=repo,
                             env=platform.git_env("alice"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in first.stdout:       # the first push holds the lock once it deploys
        seen.append(line)
        if "Running postinstall" in line:
            break
    other = git_repo(tmp_path / "cc2", python_app("cc master"))
    second = platform.push("alice", other, "concur", branch="master")
    seen.append(first.stdout.read())
    assert first.wait(60) == 0, "".join(seen)
    assert second.code == 0, second.text
    assert "Another push to concur is in progress; waiting" in second.err
    assert platform.get("concur.localhost")[:2] == (200, "cc master")


def test_first_push_ignores_files_an_earlier_app_left(platform, tmp_path):
    """A destroy cut short can leave files behind; they never become the new app's."""
    for leftover in (platform.data / "releases" / "reborn" / "v1" / "junk",
                     platform.data / "repos" / "reborn.git" / "junk"):
        leftover.parent.mkdir(parents=True)
        leftover.write_text("old")
    repo = git_repo(tmp_path / "reborn", python_app("reborn ok"))
    r = platform.push("alice", repo, "reborn")
    assert r.code == 0, r.text
    assert platform.get("reborn.localhost")[:2] == (200, "reborn ok")
    assert not (platform.data / "repos" / "reborn.git" / "junk").exists()


def test_fetch_of_a_missing_app_creates_nothing(platform, tmp_path):
    r = subprocess.run(["git", "clone", platform.remote("nosuchapp"), str(tmp_path / "c")],
                       env=platform.git_env("alice"), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "no app named 'nosuchapp'" in r.stderr
    assert not (platform.data / "repos" / "nosuchapp.git").exists()
