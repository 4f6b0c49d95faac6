"""var list/set/unset, scale, domain list/add/rm."""
from conftest import deploy_env_app, unique

HOSTILE_VALUE = """it's "quoted" $(touch /tmp/dotcloud-pwned) `id` ; rm -rf / \\ done"""


def test_var_set_reaches_the_app_without_downtime_and_keeps_values_exact(cmd, platform, tmp_path):
    name = unique("vars")
    deploy_env_app(platform, tmp_path, name)
    host = f"{name}.localhost"
    r = cmd("alice", "var", "set", name, "GREETING=hello world", f"WILD={HOSTILE_VALUE}", "EMPTY=")
    assert r.code == 0, r.text
    assert "---> Application fully deployed" in r.out
    assert "set EMPTY, GREETING, WILD; deployed as a new release" in r.out
    assert platform.get(host, "/GREETING")[:2] == (200, "hello world")
    assert platform.get(host, "/WILD")[:2] == (200, HOSTILE_VALUE)
    assert platform.get(host, "/EMPTY")[:2] == (200, "")
    import os
    assert not os.path.exists("/tmp/dotcloud-pwned")

    doc = cmd.json("alice", "var", "list", name)
    assert doc == {"name": name, "variables": {"EMPTY": "", "GREETING": "hello world",
                                               "WILD": HOSTILE_VALUE}}
    r = cmd("alice", "var", "list", name)
    assert r.out.splitlines()[0].split() == ["NAME", "VALUE"]
    assert "GREETING  hello world" in r.out

    doc = cmd.json("alice", "var", "unset", name, "GREETING", "WILD")
    assert doc["variables"] == {"EMPTY": ""} and doc["deployed"] is True
    assert platform.get(host, "/GREETING")[:2] == (200, "<unset>")
    releases = cmd.json("alice", "revisions", name)["releases"]
    assert [r["description"] for r in releases[:2]] == ["var unset GREETING WILD",
                                                        "var set EMPTY GREETING WILD"]


def test_unquoted_values_with_spaces(platform, cmd, app):
    """ssh joins its words with spaces; `var set APP K=hello world` still means one value."""
    r = platform.ssh("alice", "var", "set", app, "SPACED=hello big  world", "OTHER=1")
    assert r.code == 0, r.text
    assert cmd.json("alice", "var", "list", app)["variables"] == {"SPACED": "hello big world",
                                                                  "OTHER": "1"}
    assert cmd("alice", "var", "unset", app, "SPACED", "OTHER").code == 0


def test_var_names_are_checked(cmd, app):
    for bad, why in (("DOTCLOUD_PROJECT=x", "reserved"), ("1ABC=x", "invalid variable name"),
                     ("A-B=x", "invalid variable name"), ("$(id)=x", "invalid variable name"),
                     ("NOEQUALS", "expected NAME=VALUE"),
                     ("BIG=" + "x" * 70000, "longer than 65536 bytes")):
        r = cmd("alice", "var", "set", app, bad)
        assert r.code != 0 and why in r.err, (bad, r.err)
    r = cmd("alice", "var", "unset", app, "NOT_THERE")
    assert r.code == 1 and "has no variable NOT_THERE" in r.err
    assert cmd.json("alice", "var", "list", app)["variables"] == {}


def test_var_set_before_the_first_push_waits_for_it(cmd, platform, tmp_path):
    name = unique("early")
    assert cmd("alice", "create", name).code == 0
    r = cmd("alice", "var", "set", name, "GREETING=early bird")
    assert r.code == 0 and "applies at the next push" in r.out
    doc = cmd.json("alice", "var", "set", name, "LATER=1")
    assert doc == {"name": name, "variables": {"GREETING": "early bird", "LATER": "1"},
                   "deployed": False, "release": None}
    deploy_env_app(platform, tmp_path, name)
    assert platform.get(f"{name}.localhost", "/GREETING")[:2] == (200, "early bird")


def test_scale_up_and_down(cmd, platform, tmp_path):
    name = unique("scaled")
    deploy_env_app(platform, tmp_path, name)
    r = cmd("alice", "scale", name, "www=2")
    assert r.code == 0, r.text
    assert "Using scaling for service www (2 instance(s))" in r.out
    status = cmd.json("alice", "status", name)["instances"]
    assert sorted(i["instance"] for i in status if i["role"] == "active") == ["www.0", "www.1"]
    assert cmd.json("alice", "info", name)["services"][0]["instances"][1]["number"] == 1
    doc = cmd.json("alice", "scale", name, "www:instances=1")
    assert doc["scales"] == {"www": 1} and doc["deployed"] is True
    status = cmd.json("alice", "status", name)["instances"]
    assert [i["instance"] for i in status if i["role"] == "active"] == ["www.0"]
    assert platform.get(f"{name}.localhost")[0] == 200


def test_scale_refuses_bad_input(cmd, app):
    releases = len(cmd.json("alice", "revisions", app)["releases"])
    for words, why in ((["db=1"], "has no service db"), (["www=99"], "between 0 and 20"),
                       (["www=x"], "expected SERVICE=N"), (["../x=1"], "invalid service name"),
                       (["www"], "expected SERVICE=N")):
        r = cmd("alice", "scale", app, *words)
        assert r.code != 0 and why in r.err, (words, r.err)
    assert len(cmd.json("alice", "revisions", app)["releases"]) == releases, "no new release"
    assert cmd.json("alice", "scale", app, "www=1")["scales"] == {"www": 1}


def test_domains(cmd, platform, app):
    domain = f"{app}.example.com"
    r = cmd("alice", "domain", "add", app, domain.upper())
    assert r.code == 0 and f"{domain} now routes to {app} (www)" in r.out
    assert platform.get(domain)[:2] == (200, "env app")
    r = cmd("alice", "domain", "list", app)
    assert r.out.splitlines()[1].split() == [domain, "www", f"http://{domain}:{platform.http_port}/",
                                             "pending"]
    assert cmd.json("alice", "domain", "list", app)["domains"] == [
        {"domain": domain, "service": "www", "url": f"http://{domain}:{platform.http_port}/",
         "certificate": {"state": "pending", "not_after": None, "reason": None}}]
    assert cmd.json("alice", "url", app)["domains"] == {domain: f"http://{domain}:{platform.http_port}/"}

    other = unique("other")
    assert cmd("alice", "create", other).code == 0
    r = cmd("alice", "domain", "add", other, domain)
    assert r.code == 1 and "already in use" in r.err
    for bad, why in (("bob.localhost", "platform's own domain"), ("localhost", "invalid domain"), ("x.LocalHost", "platform's own domain"),
                     ("../etc", "invalid domain"), ("a;b.com", "invalid domain"),
                     ("127.0.0.1", "an IP address is not a domain"),
                     ("10.1.2.3", "an IP address is not a domain"),
                     ("::1", "invalid domain")):
        r = cmd("alice", "domain", "add", app, bad)
        assert r.code != 0 and why in r.err, (bad, r.err)
    r = cmd("alice", "domain", "add", app, "api", "api.example.com")
    assert r.code == 1 and "no HTTP service 'api'" in r.err
    doc = cmd.json("alice", "domain", "add", app, "www", f"json.{domain}")
    assert doc == {"name": app, "domain": f"json.{domain}", "service": "www",
                   "url": f"http://json.{domain}:{platform.http_port}/",
                   "allow_http": False, "hsts": False}
    assert cmd("alice", "domain", "rm", app, f"json.{domain}").out.strip() == \
        f"json.{domain} no longer routes to {app}"

    doc = cmd.json("alice", "domain", "rm", app, domain)
    assert doc == {"name": app, "domain": domain, "removed": True}
    assert platform.get(domain)[0] == 404
    r = cmd("alice", "domain", "rm", app, domain)
    assert r.code == 1 and f"has no domain {domain}" in r.err


def test_a_name_under_another_owners_domain_is_refused(cmd, platform, app):
    domain = f"{app}-owned.example.com"
    assert cmd("alice", "domain", "add", app, domain).code == 0
    theirs = unique("theirs")
    assert cmd("bob", "create", theirs).code == 0
    for name in (f"api.{domain}", f"a.b.{domain}"):
        r = cmd("bob", "domain", "add", theirs, name)
        assert r.code == 1 and f"is under {domain}, which another owner's app uses" in r.err
        assert theirs not in {a for _, a, _ in _domains(platform)}
    # The same owner may put another of their apps under it.
    mine = unique("mine")
    assert cmd("alice", "create", mine).code == 0
    assert cmd("alice", "domain", "add", mine, f"api.{domain}").code == 0
    # A name that merely ends the same way is not under it.
    assert cmd("bob", "domain", "add", theirs, f"x{domain}").code == 0
    assert cmd("alice", "domain", "rm", app, domain).code == 0


def _domains(platform):
    from dotcloud.state import Store
    store = Store(platform.data / "dotcloud.db")
    try:
        return store.domains()
    finally:
        store.close()
