"""Issue 16, a user per app: a hostile app, pushed by a user the owner shared
it with, tries every escape SPEC section 11 closes, at build time and at
run time, and each one fails; its neighbour keeps serving."""
import glob
import json
import os
import urllib.parse
from pathlib import Path

import pytest
from platform_helpers import git_repo, python_app

pytestmark = pytest.mark.slow
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="apps get users of their own only "
                                "when the platform runs as root")

# The build's own escapes, through its postbuild (HOME is DATA/releases/APP/vN).
BUILD_PROBE = r'''#!/bin/sh
DATA=$(cd "$HOME/../../.." && pwd)
try() {
  if sh -c "$2" >/dev/null 2>&1; then echo "ESCAPE $1: allowed"; else echo "ESCAPE $1: denied"; fi
}
echo "BUILD-UID $(id -u)"
try read-store "head -c1 $DATA/dotcloud.db"
try read-host-key "head -c1 $DATA/ssh_host_ed25519_key"
try write-neighbour-release "touch $DATA/releases/isovictim/v1/src/evil"
try plant-cache-entry "mkdir $DATA/cache/python/evil"
try list-repos "ls $DATA/repos"
try write-data-top "touch $DATA/evil"
try read-neighbour-tmp "cat /tmp/isovictim-secret"
'''

PROBE = r'''
import json, os, signal, urllib.parse


def read(path):
    with open(path, "rb") as f:
        f.read(1)


def append(path):
    with open(path, "ab") as f:
        f.write(b"#")


def create(path):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as e:
        return "denied: " + (e.strerror or type(e).__name__)


def application(environ, start_response):
    q = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if "data" not in q:     # the health check
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    data, pid = q["data"], int(q["pid"])
    tries = {
        "read the store": lambda: read(data + "/dotcloud.db"),
        "read the host key": lambda: read(data + "/ssh_host_ed25519_key"),
        "read the neighbour's environment.json": lambda: read(q["env"]),
        "read the neighbour's /proc/PID/environ": lambda: read("/proc/%d/environ" % pid),
        "read the neighbour's log": lambda: read(q["log"]),
        "list the neighbour's home": lambda: os.listdir(q["home"]),
        "write into the neighbour's home": lambda: create(q["home"] + "/evil"),
        "write into the neighbour's release": lambda: create(q["release"] + "/evil"),
        "change the neighbour's code": lambda: append(q["release"] + "/wsgi.py"),
        "write into a complete cache entry": lambda: create(q["entry"] + "/evil"),
        "change a file of a complete cache entry": lambda: append(q["entry"] + "/bin/activate"),
        "change its own code": lambda: append(os.getcwd() + "/wsgi.py"),
        "write at the top of DATA": lambda: create(data + "/evil"),
        "list the shim specs": lambda: os.listdir(data + "/instances"),
        "signal the neighbour": lambda: os.kill(pid, signal.SIGTERM),
        "read the neighbour's /tmp": lambda: read("/tmp/isovictim-secret"),
    }
    out = {"escapes": {k: attempt(f) for k, f in tries.items()}}
    out["own home"] = attempt(lambda: create(os.environ["HOME"] + "/mine"))
    out["own tmp"] = attempt(lambda: create(os.environ["TMPDIR"] + "/mine-tmp"))
    out["own /tmp"] = attempt(lambda: create("/tmp/isohostile-mine"))
    with open("/proc/self/status") as f:
        out["status"] = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def _app_pid(data: Path, app: str = "isovictim") -> int:
    """A process of the app's instance (we are root: we may look)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if (f"DOTCLOUD_PROJECT={app}\0".encode() in env and str(data).encode() in env
                and uid != 0):
            return int(entry)
    raise AssertionError(f"no process of {app} runs as an app user")


@needs_root
def test_a_hostile_app_escapes_nowhere_and_its_neighbour_keeps_serving(platform, tmp_path):
    data = platform.data
    victim = git_repo(tmp_path / "victim", python_app("victim ok", "# isolation victim\n"))
    r = platform.push("alice", victim, "isovictim")
    assert r.code == 0, r.err
    assert platform.ssh("alice", "var", "set", "isovictim", "SECRET=hunter2").code == 0
    # What the victim leaves in its /tmp is its own: not the host's, not the hostile app's.
    r = platform.ssh("alice", "run", "isovictim", "www", "--",
                     "sh", "-c", "'echo hunter3 > /tmp/isovictim-secret'")
    assert r.code == 0, r.text
    assert not Path("/tmp/isovictim-secret").exists()
    assert (data / "tmp" / "isovictim" / "isovictim-secret").read_text() == "hunter3\n"

    assert platform.ssh("alice", "create", "isohostile").code == 0
    assert platform.ssh("alice", "share", "isohostile", "bob").code == 0
    hostile = git_repo(tmp_path / "hostile", {
        "wsgi.py": PROBE, "requirements.txt": "# isolation hostile\n",
        "probe.sh": BUILD_PROBE,
        "dotcloud.yml": "www:\n  type: python\n  postbuild: sh probe.sh\n"})
    r = platform.push("bob", hostile, "isohostile")
    assert r.code == 0, r.text

    # At build time: its own uid, and every escape refused.
    uids = {int(line.split()[-1]) for line in r.err.splitlines() if "BUILD-UID" in line}
    assert len(uids) == 1 and 60000 <= uids.pop() <= 64999, r.err
    escapes = [line.split("ESCAPE ", 1)[1].strip() for line in r.err.splitlines()
               if "ESCAPE " in line]
    assert len(escapes) == 7, r.err
    assert all(line.endswith(": denied") for line in escapes), escapes

    # At run time.
    release = data / "releases" / "isovictim" / "v1"
    home = glob.glob(str(data / "homes" / "isovictim" / "g*-www.0"))[-1]
    entry = os.path.realpath(release / ".deps" / "www-python")
    query = urllib.parse.urlencode({
        "data": data, "pid": _app_pid(data), "env": f"{home}/environment.json",
        "home": home, "log": data / "logs" / "isovictim" / "www.0.log",
        "release": release / "src", "entry": entry})
    status, body, _ = platform.get("isohostile.localhost", f"/?{query}")
    assert status == 200, body
    report = json.loads(body)
    allowed = {k: v for k, v in report["escapes"].items() if not v.startswith("denied")}
    assert not allowed, allowed
    assert report["escapes"]["signal the neighbour"] == "denied: Operation not permitted"
    assert report["own home"] == "allowed" and report["own tmp"] == "allowed"
    assert report["own /tmp"] == "allowed"
    assert not Path("/tmp/isohostile-mine").exists()
    assert (data / "tmp" / "isohostile" / "isohostile-mine").exists()
    r = platform.ssh("alice", "run", "isovictim", "www", "--", "cat", "/tmp/isovictim-secret")
    assert r.code == 0 and r.out == "hunter3\n", r.text     # it lasts from one run to the next
    st = report["status"]
    uid = int(st["Uid"].split()[0])
    assert 60000 <= uid <= 64999 and set(st["Uid"].split()) == {str(uid)}
    assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == int(st["CapBnd"], 16) == 0
    assert st["NoNewPrivs"].strip() == "1"
    assert st["Groups"].strip() == ""

    # Another app's uid, and `run` runs as the app too.
    r = platform.ssh("bob", "run", "isohostile", "www", "--", "id", "-u")
    assert r.code == 0 and int(r.out.strip()) == uid, r.text
    assert os.stat(home).st_uid not in (0, uid)

    # The neighbour served throughout, and still does, untouched.
    assert platform.get("isovictim.localhost")[:2] == (200, "victim ok")
    assert not (release / "src" / "evil").exists()
    assert "SECRET=hunter2" not in body and "hunter2" not in r.text


@needs_root
def test_an_app_from_before_users_gets_one_and_still_runs_its_old_releases(platform, tmp_path):
    import sqlite3
    import subprocess
    data = platform.data
    repo = git_repo(tmp_path / "old", python_app("old v1", "# isolation old app\n"))
    assert platform.push("alice", repo, "isoold").code == 0
    # What a data directory of a version without app users looks like: no
    # uid recorded, the release and homes root's and readable by all.
    with sqlite3.connect(data / "dotcloud.db") as db:
        db.execute("DELETE FROM app_users WHERE app='isoold'")
    for top in (data / "releases" / "isoold", data / "homes" / "isoold"):
        subprocess.run(["chown", "-R", "root:root", str(top)], check=True)
        subprocess.run(["chmod", "-R", "u+w,go+rX", str(top)], check=True)

    git_repo(repo, python_app("old v2", "# isolation old app\n"), "v2")
    r = platform.push("alice", repo, "isoold")
    assert r.code == 0, r.text
    assert platform.get("isoold.localhost")[:2] == (200, "old v2")
    with sqlite3.connect(data / "dotcloud.db") as db:
        (uid,), = db.execute("SELECT uid FROM app_users WHERE app='isoold'").fetchall()
    assert 60000 <= uid <= 64999
    # The release built before the app had a user runs as that user now.
    r = platform.ssh("alice", "rollback", "isoold")
    assert r.code == 0, r.text
    assert platform.get("isoold.localhost")[:2] == (200, "old v1")
    assert os.stat(f"/proc/{_app_pid(data, 'isoold')}").st_uid == uid
    st = os.stat(data / "releases" / "isoold")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, uid, 0o750)
