"""SPEC 9: the `dotcloud` client pushes a plain directory, sending only changes, or a
Mercurial working copy."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from platform_helpers import ROOT, WSGI

pytestmark = pytest.mark.slow


def client(platform, cwd, *args, home, **environ):
    env = dict(os.environ, DOTCLOUD_SSH_COMMAND=platform.ssh_command("alice"),
               DOTCLOUD_PORT=str(platform.ssh_port), DOTCLOUD_HOST="127.0.0.1",
               XDG_CACHE_HOME=str(home), PYTHONPATH=str(ROOT), **environ)
    return subprocess.run([sys.executable, "-m", "dotcloud.client", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_push_plain_directory_twice(platform, tmp_path):
    site = tmp_path / "plainsite"
    site.mkdir()
    (site / "wsgi.py").write_text(WSGI.format(body="plain v1"))
    (site / "requirements.txt").write_text("")
    (site / "big.bin").write_bytes(os.urandom(200_000))
    r = client(platform, site, "push", "plainsite", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Uploading" in r.stdout and "rsync-" in r.stdout
    assert platform.get("plainsite.localhost")[:2] == (200, "plain v1")

    (site / "wsgi.py").write_text(WSGI.format(body="plain v2"))
    r = client(platform, site, "push", "plainsite", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert platform.get("plainsite.localhost")[:2] == (200, "plain v2")
    # Only what changed travelled: the 200 kB file went with the first upload only.
    sent = [l for l in r.stderr.replace("\r", "\n").splitlines() if "Writing objects: 100%" in l]
    assert sent and "(3/3)" in sent[-1] and " bytes" in sent[-1], sent


def test_bad_app_name_is_refused(platform, tmp_path):
    r = client(platform, tmp_path, "push", "Bad_Name", home=tmp_path)
    assert r.returncode != 0
    assert "invalid app name" in r.stderr


def hg(cwd, *args):
    env = dict(os.environ, HGPLAIN="1", HGUSER="t <t@example.com>")
    return subprocess.run(["hg", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("hg") is None, reason="Mercurial is not installed")
def test_push_mercurial_working_copy(platform, tmp_path):
    site = tmp_path / "hgsite"
    site.mkdir()
    hg(site, "init")
    (site / "wsgi.py").write_text(WSGI.format(body="hg v1"))
    (site / "requirements.txt").write_text("")
    (site / ".hgignore").write_text("syntax: glob\nsecret.txt\n")
    (site / "secret.txt").write_text("ignored by .hgignore")
    (site / "stray.txt").write_text("never added")
    (site / "notes.txt").write_text("removed before the second push")
    hg(site, "add", "wsgi.py", "requirements.txt", ".hgignore", "notes.txt")
    hg(site, "commit", "-m", "first")
    ident = hg(site, "id", "-i")
    assert len(ident) == 12

    # From a subdirectory: the working copy's root is what goes.
    (site / "sub").mkdir()
    r = client(platform, site / "sub", "push", "hgsite", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"Uploading {site} as hg-{ident}" in r.stdout
    assert platform.get("hgsite.localhost")[:2] == (200, "hg v1")
    [release] = [r for r in platform_json(platform, "revisions", "hgsite")["releases"]]
    assert release["description"] == f"push of hg-{ident}"
    src = platform.data / "releases" / "hgsite" / "v1" / "src"
    uploaded = {p.name for p in src.iterdir()} - {"__pycache__"}
    assert uploaded == {".hgignore", "requirements.txt", "wsgi.py", "notes.txt"}  # no .hg,
    # secret.txt (ignored) or stray.txt (unknown)
    assert f"push of hg-{ident}" in platform.ssh("alice", "revisions", "hgsite").out

    # Uncommitted changes go too (modified, added, removed), and the name says so.
    (site / "wsgi.py").write_text(WSGI.format(body="hg v2"))
    (site / "added.txt").write_text("added, not committed")
    hg(site, "add", "added.txt")
    hg(site, "remove", "notes.txt")
    r = client(platform, site, "push", "hgsite", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"as hg-{ident}+" in r.stdout
    assert platform.get("hgsite.localhost")[:2] == (200, "hg v2")
    src = platform.data / "releases" / "hgsite" / "v2" / "src"
    assert {p.name for p in src.iterdir()} - {"__pycache__"} == {
        ".hgignore", "requirements.txt", "wsgi.py", "added.txt"}
    r = platform.ssh("alice", "deploy", "hgsite", f"hg-{ident}")
    assert r.code == 0, r.text
    assert platform.get("hgsite.localhost")[:2] == (200, "hg v1")


def platform_json(platform, *command):
    r = platform.ssh("alice", *command, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)


@pytest.mark.skipif(shutil.which("hg") is None, reason="Mercurial is not installed")
def test_mercurial_working_copy_errors_push_nothing(platform, tmp_path):
    site = tmp_path / "hgbroken"
    site.mkdir()
    hg(site, "init")
    (site / "wsgi.py").write_text(WSGI.format(body="never"))
    hg(site, "add", "wsgi.py")
    # Without hg, a working copy is not sent as a plain folder (.hg and all).
    bare = tmp_path / "bin-without-hg"
    bare.mkdir()
    for tool in ("git", "ssh"):
        (bare / tool).symlink_to(shutil.which(tool))
    r = client(platform, site, "push", "hgbroken", home=tmp_path, PATH=str(bare))
    assert r.returncode != 0
    assert f"dotcloud: {site} is a Mercurial working copy; pushing it needs hg" in r.stderr
    # A repository hg cannot read.
    with open(site / ".hg" / "requires", "a") as f:
        f.write("no-such-hg-feature\n")
    r = client(platform, site, "push", "hgbroken", home=tmp_path)
    assert r.returncode != 0
    assert f"dotcloud: hg could not describe {site}: " in r.stderr
    assert "no-such-hg-feature" in r.stderr
    assert "hgbroken" not in platform.ssh("alice", "list").out
