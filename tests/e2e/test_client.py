"""SPEC 9: the `dotcloud` client pushes a plain directory, sending only changes."""
import os
import subprocess
import sys

import pytest
from platform_helpers import ROOT, WSGI

pytestmark = pytest.mark.slow


def client(platform, cwd, *args, home):
    env = dict(os.environ, DOTCLOUD_SSH_COMMAND=platform.ssh_command("alice"),
               DOTCLOUD_PORT=str(platform.ssh_port), DOTCLOUD_HOST="127.0.0.1",
               XDG_CACHE_HOME=str(home), PYTHONPATH=str(ROOT))
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
