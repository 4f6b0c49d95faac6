"""revisions, deploy, rollback, restart."""
import pytest
from conftest import ENV_APP, deploy_env_app, unique
from platform_helpers import git_repo

from dotcloud.datadir import DataDir
from dotcloud.locks import AppLock
from dotcloud.state import Store


@pytest.fixture(scope="module")
def versions(platform, tmp_path_factory):
    """An app pushed twice: v1 says "one", v2 says "two"."""
    name = unique("versions")
    repo = deploy_env_app(platform, tmp_path_factory.mktemp("v"), name,
                          {"wsgi.py": ENV_APP.replace("env app", "one")})
    git_repo(repo, {"wsgi.py": ENV_APP.replace("env app", "two")}, "two")
    assert platform.push("alice", repo, name).code == 0
    return name


def body(platform, name):
    return platform.get(f"{name}.localhost")[1]


def test_revisions_text_and_json(cmd, versions):
    r = cmd("alice", "revisions", versions)
    assert r.code == 0, r.text
    lines = r.out.splitlines()
    assert lines[0].split() == ["RELEASE", "REVISION", "TIME", "(UTC)", "USER", "STATUS",
                                "DESCRIPTION"]
    assert lines[1].startswith("*  v2") and "alice  active" in lines[1]
    assert lines[2].startswith("   v1") and "retired" in lines[2]
    releases = cmd.json("alice", "revisions", versions)["releases"]
    assert [(r["number"], r["status"], r["active"], r["user"], r["description"])
            for r in releases] == [(2, "active", True, "alice", "push"),
                                   (1, "retired", False, "alice", "push")]
    assert all(len(r["revision"]) == 40 and r["created"].endswith("Z") for r in releases)


def test_rollback_deploy_and_restart(cmd, platform, versions):
    assert body(platform, versions) == "two"
    doc = cmd.json("alice", "rollback", versions)
    assert doc["release"] == 3 and doc["url"] == f"http://{versions}.localhost:{platform.http_port}/"
    assert body(platform, versions) == "one"

    revs = cmd.json("alice", "revisions", versions)["releases"]
    assert revs[0]["description"] == "deploy of v1" and revs[0]["active"]
    two = next(r for r in revs if r["number"] == 2)["revision"]
    doc = cmd.json("alice", "deploy", versions, two[:7])
    assert doc["revision"] == two and doc["release"] == 4
    assert body(platform, versions) == "two"
    r = cmd("alice", "deploy", versions, "v1")
    assert r.code == 0 and "deployed from v1: now running release v5" in r.out
    assert body(platform, versions) == "one"

    before = {i["pid"] for i in cmd.json("alice", "status", versions)["instances"]}
    r = cmd("alice", "restart", versions)
    assert r.code == 0 and "restarted: now running release v6" in r.out, r.text
    after = cmd.json("alice", "status", versions)["instances"]
    assert {i["pid"] for i in after if i["role"] == "active"}.isdisjoint(before)
    assert body(platform, versions) == "one", "a restart keeps the code"

    # One service: its instances restart in place, no new release.
    [inst] = [i for i in cmd.json("alice", "status", versions)["instances"] if i["role"] == "active"]
    doc = cmd.json("alice", "restart", versions, "www")
    assert doc == {"name": versions, "service": "www", "restarted": ["www.0"]}
    [again] = [i for i in cmd.json("alice", "status", versions)["instances"] if i["role"] == "active"]
    assert (again["id"], again["port"], again["state"]) == (inst["id"], inst["port"], "running")
    assert again["pid"] != inst["pid"]
    assert cmd.json("alice", "revisions", versions)["releases"][0]["number"] == 6
    assert body(platform, versions) == "one"
    r = cmd("alice", "restart", versions, "www")
    assert "[www.0] Stopping..." in r.out and "restarted www.0 of" in r.out
    r = cmd("alice", "rollback", versions)
    assert r.code == 0 and "Deploying release v5" in r.out, r.text
    assert f"{versions} rolled back to v5: now running release v7" in r.out
    r = cmd("alice", "restart", versions, "db")
    assert r.code == 1 and "has no service 'db'" in r.err


def test_deploy_errors(cmd, versions):
    for rev, why in (("v99", "has no release v99"), ("deadbeef", "no deployable release"),
                     ("../x", "expected a release"), ("$(id)", "expected a release")):
        r = cmd("alice", "deploy", versions, rev)
        assert r.code != 0 and why in r.err, (rev, r.err)


def test_nothing_deployed_yet(cmd):
    name = unique("empty")
    assert cmd("alice", "create", name).code == 0
    for words, why in ((["rollback", name], "nothing to roll back"),
                       (["restart", name], "nothing deployed yet"),
                       (["deploy", name, "v1"], "has no release v1")):
        r = cmd("alice", *words)
        assert r.code == 1 and why in r.err, (words, r.err)
    assert "no releases yet" in cmd("alice", "revisions", name).out
    assert cmd.json("alice", "revisions", name)["releases"] == []



def test_restart_of_a_service_dying_on_every_request_fails_at_once(cmd, platform, tmp_path):
    name = unique("dying")
    die = platform.data / "homes" / name / "die"
    app = ENV_APP.replace("def application(environ, start_response):\n",
                          "def application(environ, start_response):\n"
                          f"    if os.path.exists({str(die)!r}):\n        os._exit(1)\n")
    deploy_env_app(platform, tmp_path, name, {"wsgi.py": app})
    die.touch()
    r = cmd("alice", "restart", name, "www")
    assert r.code == 1, r.text
    assert ("www.0 not responsive: it closed the connection without an answer, "
            "3 checks in a row") in r.err, r.text

def test_restart_of_a_service_answering_500_fails_with_what_it_answered(cmd, platform,
                                                                        tmp_path):
    name = unique("failing")
    broken = platform.data / "homes" / name / "broken"
    app = ENV_APP.replace('start_response("200 OK"',
                          f'start_response("503 Down" if os.path.exists({str(broken)!r}) '
                          'else "200 OK"')
    deploy_env_app(platform, tmp_path, name, {"wsgi.py": app})
    broken.touch()
    r = cmd("alice", "restart", name, "www")
    assert r.code == 1, r.text
    assert "www.0 answered 503 Down to GET / " in r.err and "times in a row" in r.err, r.text


def test_failed_config_release_is_undone(cmd, platform, tmp_path):
    """A var set whose deploy fails leaves the variables as they were."""
    name = unique("fragile")
    broken = 'os.environ.get("BROKEN") or os.environ["DOTCLOUD_SERVICE_ID"] == "1"'
    app = ENV_APP.replace('start_response("200 OK"',
                          f'start_response("500 No" if {broken} else "200 OK"')
    yml = "www:\n  type: python\n  healthcheck: {path: /, timeout: 2}\n"
    deploy_env_app(platform, tmp_path, name, {"wsgi.py": app, "dotcloud.yml": yml})
    r = cmd("alice", "var", "set", name, "BROKEN=1")
    assert r.code == 1 and "deploy failed: www.0 answered 500 No to GET / " in r.err, r.text
    assert cmd.json("alice", "var", "list", name)["variables"] == {}
    assert platform.get(f"{name}.localhost")[:2] == (200, "env app")
    revs = [r for r in cmd.json("alice", "revisions", name)["releases"] if r["number"] <= 2]
    assert revs[0]["status"] == "failed" and revs[1]["active"]
    r = cmd("alice", "rollback", name)
    assert r.code == 1 and "no earlier release" in r.err
    r = cmd("alice", "deploy", name, f"v{revs[0]['number']}")
    assert r.code == 2 and "is failed; it cannot be deployed" in r.err

    r = cmd("alice", "scale", name, "www=2")
    assert r.code == 1 and "deploy failed: www.1 answered 500 No to GET / " in r.err, r.text
    store = Store(platform.data / "dotcloud.db")
    try:
        assert store.scales(name) == {}, "the failed scale was undone"
    finally:
        store.close()
    assert cmd.json("alice", "scale", name, "www=1")["scales"] == {"www": 1}


def test_a_command_waits_for_the_deploy_lock_and_says_so(cmd, platform, app):
    from test_logs_status import read_until, wait_for
    lock = AppLock(DataDir(platform.data), app)
    assert lock.try_acquire()
    try:
        proc = cmd.popen("alice", "var", "set", app, "WAITED=yes")
        read_until(proc, "waiting for it to finish")
        assert cmd.json("alice", "var", "list", app)["variables"] == {}, "nothing changed yet"
    finally:
        lock.release()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert b"Done waiting" in out and b"Application fully deployed" in out
    assert cmd.json("alice", "var", "list", app)["variables"] == {"WAITED": "yes"}
    assert platform.get(f"{app}.localhost", "/WAITED")[1] == "yes"

    # A client that gives up while waiting changes nothing.
    releases = len(cmd.json("alice", "revisions", app)["releases"])
    assert lock.try_acquire()
    try:
        proc = cmd.popen("alice", "var", "unset", app, "WAITED")
        read_until(proc, "waiting for it to finish")
        proc.kill()
        proc.wait()
        assert wait_for(lambda: any("client went away" in e["detail"] for e in
                                    cmd.json("alice", "audit", app, "-n", "5")["entries"]))
    finally:
        lock.release()
    assert cmd.json("alice", "var", "list", app)["variables"] == {"WAITED": "yes"}
    assert len(cmd.json("alice", "revisions", app)["releases"]) == releases
    assert cmd("alice", "var", "unset", app, "WAITED").code == 0



def test_an_app_destroyed_while_a_command_waits_gets_nothing_written(cmd, platform):
    from test_logs_status import read_until
    name = unique("gone")
    assert cmd("alice", "create", name).code == 0
    lock = AppLock(DataDir(platform.data), name)
    assert lock.try_acquire()
    store = Store(platform.data / "dotcloud.db")
    try:
        proc = cmd.popen("alice", "var", "set", name, "ORPHAN=1")
        read_until(proc, "waiting for it to finish")
        store.delete_app(name)   # what destroy does, under the lock it holds
        lock.release()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and f"no app named '{name}'".encode() in err
        assert store.variables(name) == {}
    finally:
        lock.release()
        store.close()
