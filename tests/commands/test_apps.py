"""list, create, destroy, info, url, help: text and JSON, over the real ssh client."""
import re
import time

from conftest import deploy_env_app, unique
from platform_helpers import git_repo, python_app


def test_help_lists_every_command_and_shows_one(cmd):
    r = cmd("alice", "help")
    assert r.code == 0, r.text
    for word in ("list", "create APP", "destroy APP --force", "var set APP NAME=VALUE",
                 "logs APP [SERVICE[.N]] [-n LINES] [-f]", "run APP SERVICE [--timeout SECONDS] -- COMMAND",
                 "keys add NAME", "share APP USER", "help [COMMAND]"):
        assert word in r.out
    r = cmd("alice", "help", "var")
    assert r.code == 0 and "var set APP NAME=VALUE" in r.out and "scale" not in r.out
    doc = cmd.json("alice", "help", "logs")
    assert doc == {"commands": [{"name": "logs", "usage": "logs APP [SERVICE[.N]] [-n LINES] [-f]",
                                 "help": doc["commands"][0]["help"]}]}
    r = cmd("alice", "help", "nope")
    assert r.code == 2 and "no command named 'nope'" in r.err


def test_unknown_command_and_wrong_arguments_print_usage(cmd):
    r = cmd("bob", "frobnicate")
    assert r.code == 2
    assert "dotcloud: unknown command 'frobnicate'; try: help" in r.err
    assert "create APP" in r.err, "the overview is printed"
    r = cmd("bob", "info")
    assert r.code == 2 and r.err.strip() == "dotcloud: usage: info APP"
    r = cmd("bob", "var")
    assert r.code == 2 and "usage: var list APP | var set APP NAME=VALUE" in r.err
    r = cmd("bob", "list", "--bogus")
    assert r.code == 2 and "unknown option '--bogus'" in r.err


def test_create_list_info_url(cmd, platform):
    name = unique("made")
    r = cmd("bob", "create", name)
    assert r.code == 0, r.text
    assert f"ssh://dotcloud@127.0.0.1:{platform.ssh_port}/{name}" in r.out
    r = cmd("bob", "create", name)
    assert r.code == 1 and f"an app named '{name}' already exists" in r.err
    r = cmd("bob", "list")
    assert r.code == 0
    header, *rows = r.out.splitlines()
    assert header.split() == ["NAME", "OWNER", "RELEASE", "REVISION", "URL"]
    assert [name, "bob", "-", "-", f"http://{name}.localhost:{platform.http_port}/"] in \
        [row.split() for row in rows]
    apps = {a["name"]: a for a in cmd.json("bob", "list")["apps"]}
    assert apps[name] == {"name": name, "owner": "bob", "shared_with": [], "release": None,
                          "revision": None, "deployed": None,
                          "url": f"http://{name}.localhost:{platform.http_port}/"}
    r = cmd("bob", "info", name)
    assert r.code == 0 and "release:   none yet" in r.out
    info = cmd.json("bob", "info", name)
    assert info["owner"] == "bob" and info["release"] is None and info["services"] == []
    assert cmd("bob", "url", name).out.strip() == f"http://{name}.localhost:{platform.http_port}/"
    created = cmd.json("alice", "create", unique("made"))
    assert created["owner"] == "alice" and created["remote"].startswith("ssh://dotcloud@")


def test_info_and_url_of_a_deployed_app(cmd, platform, app):
    r = cmd("alice", "info", app)
    assert r.code == 0, r.text
    assert re.search(r"release:   v\d+, revision [0-9a-f]{7}, deployed .* UTC by \w", r.out)
    assert "www" in r.out and "python" in r.out
    info = cmd.json("alice", "info", app)
    assert info["release"]["number"] >= 1 and len(info["release"]["revision"]) == 40
    [www] = info["services"]
    assert www["name"] == "www" and www["type"] == "python" and www["http"] is True
    assert www["url"] == f"http://{app}.localhost:{platform.http_port}/"
    assert [i["number"] for i in www["instances"]] == [0]
    urls = cmd.json("alice", "url", app)
    assert urls == {"name": app, "urls": {"www": www["url"]}, "domains": {}}
    listed = {a["name"]: a for a in cmd.json("alice", "list")["apps"]}
    assert listed[app]["release"] == info["release"]["number"]


def test_destroy_needs_force_then_removes_everything(cmd, platform, tmp_path):
    name = unique("doomed")
    deploy_env_app(platform, tmp_path, name)
    assert platform.get(f"{name}.localhost")[0] == 200
    pids = [i["pid"] for i in cmd.json("alice", "status", name)["instances"]]
    assert cmd("alice", "logs", name).out, "it has logs"

    r = cmd("alice", "destroy", name)
    assert r.code == 2 and "--force" in r.err
    assert platform.get(f"{name}.localhost")[0] == 200, "nothing happened without --force"

    r = cmd("bob", "destroy", name, "--force")
    assert r.code == 1 and f"no app named '{name}' that you can access" in r.err

    doc = cmd.json("alice", "destroy", name, "--force")
    assert doc["destroyed"] is True and doc["instances_stopped"] == 1 and doc["all_stopped"]
    assert platform.get(f"{name}.localhost")[0] == 404
    for sub in (f"repos/{name}.git", f"releases/{name}", f"homes/{name}", f"logs/{name}"):
        assert not (platform.data / sub).exists(), sub
    for pid in pids:
        assert not _alive(pid), "the instance's shim is gone"
    assert name not in [a["name"] for a in cmd.json("alice", "list")["apps"]]
    r = cmd("alice", "info", name)
    assert r.code == 1 and f"no app named '{name}'" in r.err

    # The name is free again, for anyone, with nothing of the old app.
    assert cmd("bob", "create", name).code == 0
    assert cmd("bob", "destroy", name, "--force").out == \
        f"destroyed {name} (0 instance(s) stopped)\n"
    assert cmd("bob", "create", name).code == 0
    info = cmd.json("bob", "info", name)
    assert info["owner"] == "bob" and info["release"] is None
    assert cmd.json("bob", "status", name)["instances"] == []
    assert cmd("bob", "logs", name).out == ""
    audit = cmd.json("alice", "audit", name)["entries"]
    assert any(e["action"] == "destroy" and e["user"] == "alice" and "ok" in e["detail"]
               for e in audit)


def test_create_clears_files_left_by_an_earlier_app_of_that_name(cmd, platform, tmp_path):
    name = unique("leftover")
    for sub in (f"repos/{name}.git", f"releases/{name}/v1/src", f"homes/{name}", f"logs/{name}"):
        (platform.data / sub).mkdir(parents=True)
    (platform.data / "logs" / name / "www.0.log").write_text(
        "2026-11-25T19:30:01.123Z web: a secret of the old owner\n")
    assert cmd("bob", "create", name).code == 0
    assert cmd("bob", "logs", name).out == ""
    assert not (platform.data / "releases" / name).exists()
    deploy = git_repo(tmp_path / name, python_app("fresh"))
    r = platform.push("bob", deploy, name)
    assert r.code == 0, r.text   # v1 builds: nothing was left in its way
    assert platform.get(f"{name}.localhost")[1] == "fresh"


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return False
        except FileNotFoundError:
            return False
        time.sleep(0.05)
    return True
