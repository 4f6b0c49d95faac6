"""Users, keys, sharing and the audit log: a second user cannot see, push to,
fetch, configure or destroy the first user's app until it is shared."""
import subprocess

from conftest import unique
from platform_helpers import git_repo, make_key, python_app


def git(platform, user, *args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, env=platform.git_env(user),
                          capture_output=True, text=True, timeout=120)


def test_a_second_user_cannot_touch_an_app_until_it_is_shared(cmd, platform, app, tmp_path):
    user = unique("carol")
    platform.add_user(user)
    denied = f"no app named '{app}' that you can access"
    assert app not in [a["name"] for a in cmd.json(user, "list")["apps"]]
    for words in (["info", app], ["status", app], ["url", app], ["logs", app], ["var", "list", app],
                  ["var", "set", app, "X=1"], ["scale", app, "www=2"], ["restart", app],
                  ["revisions", app], ["rollback", app], ["deploy", app, "v1"],
                  ["domain", "list", app], ["domain", "add", app, "carol.example.com"],
                  ["run", app, "www", "--", "id"], ["destroy", app, "--force"],
                  ["share", app, user], ["unshare", app, user], ["audit", app]):
        r = cmd(user, *words)
        assert (r.code, r.err.strip()) == (1, f"dotcloud: {denied}"), (words, r.text)
    # The same answer as for an app that does not exist: nothing leaks.
    assert cmd(user, "info", "no-such-app-at-all").err.strip() == \
        "dotcloud: no app named 'no-such-app-at-all' that you can access"
    clone = git(platform, user, "clone", platform.remote(app), str(tmp_path / "clone"))
    assert clone.returncode != 0 and denied in clone.stderr
    repo = git_repo(tmp_path / "mine", python_app("carol was here"))
    push = platform.push(user, repo, app)
    assert push.code != 0 and denied in push.err
    assert platform.get(f"{app}.localhost")[1] == "env app"
    assert cmd.json("alice", "var", "list", app)["variables"] == {}

    # Shared: carol may use it (but not share it further or destroy it).
    assert cmd("bob", "share", app, user).err.strip() == f"dotcloud: {denied.replace(app, app)}"
    doc = cmd.json("alice", "share", app, user)
    assert doc == {"name": app, "shared_with": [user]}
    assert app in [a["name"] for a in cmd.json(user, "list")["apps"]]
    assert cmd.json(user, "info", app)["shared_with"] == [user]
    assert git(platform, user, "clone", platform.remote(app), str(tmp_path / "clone")).returncode == 0
    assert cmd(user, "var", "set", app, "BY=carol").code == 0
    r = cmd(user, "destroy", app, "--force")
    assert r.code == 1 and f"only the owner of '{app}' (alice) or an admin can destroy it" in r.err
    r = cmd(user, "share", app, "bob")
    assert r.code == 1 and "only the owner" in r.err
    assert cmd(user, "var", "unset", app, "BY").code == 0

    # Unshared: back to nothing.
    assert cmd.json("alice", "share", app, "bob")["shared_with"] == ["bob", user]
    assert cmd.json("alice", "unshare", app, "bob") == {"name": app, "shared_with": [user]}
    r = cmd("alice", "unshare", app, user)
    assert r.code == 0 and f"{user} can no longer use {app}" in r.out
    assert cmd(user, "info", app).code == 1
    assert git(platform, user, "ls-remote", platform.remote(app)).returncode != 0
    r = cmd("alice", "unshare", app, user)
    assert r.code == 1 and "is not shared with" in r.err
    r = cmd("alice", "share", app, "nobody-of-that-name")
    assert r.code == 1 and "no user named 'nobody-of-that-name'" in r.err
    r = cmd("alice", "share", app, "alice")
    assert r.code == 2 and "owns" in r.err


def test_create_says_a_hidden_app_is_not_available_and_a_visible_one_exists(cmd, platform):
    user = unique("frank")
    platform.add_user(user)
    name = unique("taken")
    assert cmd("bob", "create", name).code == 0
    # Whose the name is stays hidden: one line, as every other command hides the app.
    r = cmd(user, "create", name)
    assert (r.code, r.err.strip()) == (1, f"dotcloud: the name '{name}' is not available")
    r = cmd(user, "create", name, "--json")
    assert r.code == 1 and f"the name '{name}' is not available" in r.err and name not in r.out
    assert cmd(user, "info", name).err.strip() == \
        f"dotcloud: no app named '{name}' that you can access"
    # Those who may see it are told it exists: the owner, an admin, a user it is shared with.
    exists = f"dotcloud: an app named '{name}' already exists"
    r = cmd("bob", "create", name)
    assert (r.code, r.err.strip()) == (1, exists)
    assert cmd("alice", "create", name).err.strip() == exists
    assert cmd("bob", "share", name, user).code == 0
    assert cmd(user, "create", name).err.strip() == exists
    assert cmd("bob", "unshare", name, user).code == 0
    assert cmd(user, "create", name).err.strip() == f"dotcloud: the name '{name}' is not available"
    assert [a["owner"] for a in cmd.json("alice", "list")["apps"] if a["name"] == name] == ["bob"]
    assert cmd("bob", "destroy", name, "--force").code == 0
    assert cmd(user, "create", name).code == 0, "a freed name is anyone's"
    assert cmd(user, "destroy", name, "--force").code == 0


def test_users_see_their_own_apps_and_admins_see_all(cmd):
    mine = unique("bobs")
    assert cmd("bob", "create", mine).code == 0
    bob_sees = [a["name"] for a in cmd.json("bob", "list")["apps"]]
    alice_sees = [a["name"] for a in cmd.json("alice", "list")["apps"]]
    assert mine in bob_sees and mine in alice_sees
    assert set(bob_sees) < set(alice_sees), "the admin sees the other apps too"
    assert cmd("alice", "var", "set", mine, "ADMIN=yes").code == 0, "admins manage everything"
    assert cmd("alice", "destroy", mine, "--force").code == 0


def test_keys_over_ssh(cmd, platform, tmp_path):
    name = unique("dave")
    key = make_key(tmp_path, name)
    pub = (tmp_path / f"id_{name}.pub").read_bytes()
    r = cmd("bob", "keys", "add", name, input=pub)
    assert r.code == 1 and "only an admin can add keys" in r.err
    r = cmd("alice", "keys", "add", name, input=pub)
    assert r.code == 0 and "added key SHA256:" in r.out, r.text
    platform.keys[name] = key
    assert cmd.json(name, "list") == {"apps": []}, "the new key gets in"
    keys = cmd.json(name, "keys", "list")["keys"]
    assert [(k["user"], k["admin"], k["type"]) for k in keys] == [(name, False, "ssh-ed25519")]
    everyone = {k["user"] for k in cmd.json("alice", "keys", "list")["keys"]}
    assert {"alice", "bob", name} <= everyone
    r = cmd("alice", "keys", "list")
    assert r.out.splitlines()[0].split()[:4] == ["USER", "ROLE", "TYPE", "FINGERPRINT"]

    r = cmd("alice", "keys", "add", "bob", input=pub)
    assert r.code == 1 and f"that key already belongs to '{name}'" in r.err
    for bad, why in ((b"", "send the public key on stdin"), (b"not a key\n", "not an OpenSSH public key"),
                     (b"\xff\xfe\n", "plain ASCII"), (b"ssh-ed25519 AAAA\n", "not valid base64"),
                     (b"x" * 20000, "too much")):
        r = cmd("alice", "keys", "add", unique("eve"), input=bad)
        assert r.code != 0 and why in r.err, (bad[:20], r.err)
    r = cmd("alice", "keys", "add", "../root", input=pub)
    assert r.code == 1 and "invalid user name" in r.err

    r = cmd("bob", "keys", "remove", name)
    assert r.code == 1 and "only an admin can remove another user's keys" in r.err
    doc = cmd.json("alice", "keys", "remove", name)
    assert doc == {"user": name, "removed_keys": 1}
    assert cmd(name, "list").code == 255, "the key no longer gets in"
    r = cmd("alice", "keys", "remove", name)
    assert r.code == 1 and f"no user named '{name}'" in r.err
    r = cmd("alice", "keys", "remove", "alice")
    assert r.code == 1 and "last admin" in r.err


def test_an_admin_key_added_over_ssh_is_an_admin(cmd, platform, tmp_path):
    name = unique("root")
    platform.keys[name] = make_key(tmp_path, name)
    pub = (tmp_path / f"id_{name}.pub").read_bytes()
    doc = cmd.json("alice", "keys", "add", name, "--admin", input=pub)
    assert doc["admin"] is True
    assert len(cmd.json(name, "keys", "list")["keys"]) >= 3, "an admin sees every key"
    assert cmd(name, "keys", "remove", name).code == 0, "users may remove their own keys"


def test_every_command_and_push_is_audited(cmd, platform, app):
    assert cmd("bob", "info", app).code == 1
    assert cmd("alice", "url", app).code == 0
    entries = cmd.json("alice", "audit", app, "-n", "500")["entries"]
    actions = [(e["user"], e["action"], e["detail"]) for e in entries]
    assert ("alice", "push", ) == actions[0][:2] or any(a[1] == "push" for a in actions)
    assert ("bob", "info", f"failed: no app named '{app}' that you can access") in actions
    assert ("alice", "url", "ok") == actions[-1]
    r = cmd("alice", "audit", app)
    assert r.out.splitlines()[0].split() == ["TIME", "(UTC)", "USER", "APP", "ACTION", "DETAIL"]
    r = cmd("bob", "audit")
    assert r.code == 1 and "only an admin" in r.err
    everything = cmd.json("alice", "audit", "-n", "1000")["entries"]
    assert {e["app"] for e in everything} > {app}
