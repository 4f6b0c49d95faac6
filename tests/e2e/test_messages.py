"""What a failed deploy tells the pusher: the 5xx an instance answered, and
only its own lines of the log file its label shares with earlier instances."""
import os
import time

import pytest
from platform_helpers import git_repo, python_app

from hooks.deploy import last_run_excerpt
from runtime.shimlog import timestamp

pytestmark = pytest.mark.slow

FAILING = '''
def application(environ, start_response):
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"broken"]
'''


def test_release_answering_500_is_refused_with_what_it_answered(platform, tmp_path):
    repo = git_repo(tmp_path / "m500", python_app("m500 good"))
    assert platform.push("alice", repo, "m500").code == 0
    # A generous timeout: the push must end long before it.
    yml = "www:\n  type: python\n  healthcheck: {path: /, timeout: 300}\n"
    git_repo(repo, {"wsgi.py": FAILING, "dotcloud.yml": yml}, "500 on every request")
    started = time.monotonic()
    r = platform.push("alice", repo, "m500")
    assert r.code != 0
    [ref] = [l for l in r.err.splitlines() if "[remote rejected]" in l]
    assert "(deploy failed: www.0 answered 500 Internal Server Error to GET / " in ref, r.err
    assert ref.rstrip().endswith(" times in a row)"), ref
    assert time.monotonic() - started < 300
    assert platform.get("m500.localhost")[:2] == (200, "m500 good")


LOUD = '''
import sys
print("Error: a line of the first deploy", file=sys.stderr, flush=True)
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"first"]
'''
CRASHING = '''
import sys
print("Error: a line of the failing deploy", file=sys.stderr, flush=True)
raise SystemExit(3)
'''


def excerpt(r):
    return [l for l in r.err.splitlines() if "[www.0]   " in l]


def test_a_failed_deploys_excerpt_holds_only_its_own_lines(platform, tmp_path):
    repo = git_repo(tmp_path / "mlog", {"wsgi.py": LOUD, "requirements.txt": ""})
    assert platform.push("alice", repo, "mlog").code == 0
    log = platform.data / "logs" / "mlog" / "www.0.log"
    assert "Error: a line of the first deploy" in log.read_text()

    # Fails before its instance ever starts: nothing of its own to show, and
    # the first deploy's lines are not its.
    git_repo(repo, {"postinstall": "#!/bin/sh\nexit 4\n"}, "failing postinstall")
    r = platform.push("alice", repo, "mlog")
    assert r.code != 0 and "postinstall" in r.err, r.err
    assert not any("first deploy" in l for l in excerpt(r)), excerpt(r)

    git_repo(repo, {"wsgi.py": CRASHING, "postinstall": "#!/bin/sh\nexit 0\n"}, "crashing")
    r = platform.push("alice", repo, "mlog")
    assert r.code != 0 and "crashed at boot" in r.err, r.err
    lines = excerpt(r)
    assert any("Error: a line of the failing deploy" in l for l in lines), r.err
    assert not any("first deploy" in l for l in lines), lines
    assert platform.get("mlog.localhost")[:2] == (200, "first")


def test_the_excerpt_leaves_out_records_stamped_before_the_instance():
    now = time.time()
    earlier = [f"{timestamp(now - 60)} web: [dotcloud] started pid=1",
               f"{timestamp(now - 59)} web: Error: old"]
    assert last_run_excerpt("\n".join(earlier)) == ["web: Error: old"]
    assert last_run_excerpt("\n".join(earlier), since=now) == []
    text = "\n".join(earlier + [f"{timestamp(now + 1)} web: Traceback (most recent call last)",
                                f"{timestamp(now + 1)} web: ValueError: new",
                                f"{timestamp(now + 2)} web: [dotcloud] exited status=1"])
    assert last_run_excerpt(text, since=now) == [
        "web: Traceback (most recent call last)", "web: ValueError: new",
        "web: [dotcloud] exited status=1"]


def test_the_excerpt_keeps_the_errors_of_a_run_the_runtime_restarted():
    now = time.time()
    text = "\n".join([f"{timestamp(now + 1)} web: [dotcloud] started pid=1",
                      f"{timestamp(now + 1)} web: ModuleNotFoundError: No module named 'x'",
                      f"{timestamp(now + 2)} web: [dotcloud] exited status=1, restarting in 1s",
                      f"{timestamp(now + 3)} web: [dotcloud] started pid=2",
                      f"{timestamp(now + 3)} web: [dotcloud] stopping (got SIGTERM)"])
    assert "web: ModuleNotFoundError: No module named 'x'" in last_run_excerpt(text, since=now)


OPERATOR_BIN = "/tmp/xyz-operator-bin"
SYSTEM = {"/usr/local/bin", "/usr/bin", "/bin"}
SHOW_PATH = '''
import os
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [os.environ["PATH"].encode()]
'''
NODE_PATH = ('require("http").createServer((q, s) => s.end(process.env.PATH))'
             '.listen(process.env.PORT);\n')
TWO = '''
www:
  type: python
  postbuild: echo "build-path=$PATH"
api:
  type: nodejs
  postbuild: echo "build-path=$PATH"
'''


@pytest.fixture(scope="module")
def operator_platform(tmp_path_factory):
    """A platform started by an operator whose PATH has a directory of their own."""
    from platform_helpers import Platform
    root = tmp_path_factory.mktemp("operator")
    p = Platform(data=root / "data", home=root)
    (root / "data").mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("PATH", f"{OPERATOR_BIN}:{os.environ['PATH']}")
    try:
        p.start()
    finally:
        mp.undo()
    p.add_user("alice", admin=True)
    yield p
    p.stop()


def foreign(path: str, platform) -> list[str]:
    """PATH directories that are neither the system's nor the platform's data."""
    return [d for d in path.split(":")
            if d not in SYSTEM and not d.startswith(str(platform.data) + "/")]


def test_builds_instances_and_run_get_a_clean_path(operator_platform, tmp_path):
    p = operator_platform
    repo = git_repo(tmp_path / "paths", {
        "dotcloud.yml": TWO, "wsgi.py": SHOW_PATH, "requirements.txt": "",
        "package.json": '{"name": "p", "version": "1.0.0"}', "server.js": NODE_PATH})
    r = p.push("alice", repo, "paths")
    assert r.code == 0, r.err
    built = {l.split("] ", 1)[0].split("[")[-1]: l.split("build-path=", 1)[1].strip()
             for l in r.err.splitlines() if "build-path=" in l}
    assert set(built) == {"www", "api"}, r.err
    www = p.get("paths.localhost")[1]
    api = p.get("api.paths.localhost")[1]
    ran = p.ssh("alice", "run", "paths", "www", "--", "sh", "-c", "'echo $PATH'")
    assert ran.code == 0, ran.text
    for where, path in [("www build", built["www"]), ("api build", built["api"]),
                        ("www", www), ("api", api), ("run", ran.out.strip())]:
        assert OPERATOR_BIN not in path, (where, path)
        assert foreign(path, p) == [], (where, path)
        assert path.endswith(":/usr/local/bin:/usr/bin:/bin"), (where, path)
    assert www.split(":")[0].endswith("/bin") and "/usr/bin" in api.split(":")
    assert ran.out.strip() == www


def test_the_excerpt_ends_with_the_instances_own_lines_not_an_older_ones():
    # The log is the label's: the instance of the serving release writes its
    # requests there while the new one fails.
    now = time.time()
    text = "\n".join([f"{timestamp(now + 1)} web: GET / 200",
                      f"{timestamp(now + 1)} web: ModuleNotFoundError: No module named 'x'",
                      f"{timestamp(now + 2)} web: [swarm] its task exited with status 1",
                      f"{timestamp(now + 2)} web: GET / 200",
                      f"{timestamp(now + 3)} web: GET / 200"])
    own = {"web: ModuleNotFoundError: No module named 'x'",
           "web: [swarm] its task exited with status 1"}
    assert last_run_excerpt(text, since=now, own=own) == [
        "web: ModuleNotFoundError: No module named 'x'",
        "web: [swarm] its task exited with status 1"]
    assert last_run_excerpt(text, since=now)[-1] == "web: GET / 200"
