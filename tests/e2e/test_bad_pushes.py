"""SPEC 10 for pushes: corrupt, truncated and oversized packs are refused
with a clear reason and change nothing."""
import os
import subprocess

import pytest
from platform_helpers import git_repo, python_app

pytestmark = pytest.mark.slow
ZERO = "0" * 40


def pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def raw_receive_pack(platform, app: str, pack: bytes) -> bytes:
    """Speak receive-pack by hand over the real ssh client, sending `pack`."""
    argv = platform.ssh_command("alice").split() + [
        "-p", str(platform.ssh_port), "dotcloud@127.0.0.1", f"git-receive-pack '{app}'"]
    new = "1" * 40
    request = pkt(f"{ZERO} {new} refs/heads/main\0report-status side-band-64k\n".encode())
    r = subprocess.run(argv, input=request + b"0000" + pack, capture_output=True, timeout=60)
    return r.stdout + r.stderr


def repo_files(platform, app) -> dict[str, int]:
    """Every file of the app's repository, with its size."""
    root = platform.data / "repos" / f"{app}.git"
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def refs(platform, app):
    return subprocess.run(["git", "ls-remote", platform.remote(app)], env=platform.git_env("alice"),
                          capture_output=True, text=True, timeout=60).stdout


@pytest.mark.parametrize("app, pack", [
    ("corrupt1", b"PACK\x00\x00\x00\x02\x00\x00\x00\x05garbage-not-a-pack"),  # bad objects
    ("corrupt2", b"PACK\x00\x00\x00\x02"),                                    # truncated
    ("corrupt3", b"not a pack at all" * 10),
    ("corrupt4", b"PACK\x00\x00\x00\x02\x00\x00\x00\x01"),                    # one object, no bytes
])
def test_corrupt_or_truncated_pack_is_refused(platform, tmp_path, app, pack):
    repo = git_repo(tmp_path / "cp", python_app("cp good"))
    assert platform.push("alice", repo, app).code == 0
    before, files = refs(platform, app), repo_files(platform, app)
    out = raw_receive_pack(platform, app, pack)
    assert b"unpack" in out and b"unpack ok" not in out, out
    assert refs(platform, app) == before
    assert repo_files(platform, app) == files, "the refused pack left files behind"
    assert platform.get(f"{app}.localhost")[:2] == (200, "cp good")


def test_push_past_the_size_limit_is_refused(platform, tmp_path):
    repo = git_repo(tmp_path / "big", python_app("big good"))
    assert platform.push("alice", repo, "bigpush").code == 0
    before, files = refs(platform, "bigpush"), repo_files(platform, "bigpush")
    (repo / "blob.bin").write_bytes(os.urandom(10 * 1024 * 1024))   # limit is 8 MiB here
    git_repo(repo, {}, "huge")
    r = platform.push("alice", repo, "bigpush")
    assert r.code != 0
    assert "larger than the limit of 8 MiB" in r.err, r.err
    assert refs(platform, "bigpush") == before
    assert repo_files(platform, "bigpush") == files, "the refused pack left files behind"
    assert platform.get("bigpush.localhost")[:2] == (200, "big good")


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("app, files, why", [
    ("failbuild", {"requirements.txt": "no-such-package-dotcloud-test==1.0\n"}, "build failed"),
    ("faildeploy", {"wsgi.py": "raise SystemExit(3)\n"}, "deploy failed"),
])
def test_a_failed_build_or_deploy_leaves_no_build_output(platform, tmp_path, app, files, why):
    repo = git_repo(tmp_path / "fb", python_app("fb good"))
    assert platform.push("alice", repo, app).code == 0
    releases = platform.data / "releases" / app
    before = _tree(releases)
    before_homes = [p.name for p in (platform.data / "homes" / app).iterdir()]
    git_repo(repo, files, "broken")
    r = platform.push("alice", repo, app)
    assert r.code != 0 and why in r.err, r.err
    assert _tree(releases) == before
    assert platform.get(f"{app}.localhost")[:2] == (200, "fb good")
    homes = platform.data / "homes" / app
    failed = set(p.name for p in homes.iterdir()) - set(before_homes)
    # The next deploy removes the homes of instances that are gone.
    git_repo(repo, python_app("fb fixed"), "fixed")
    assert platform.push("alice", repo, app).code == 0
    assert platform.get(f"{app}.localhost")[:2] == (200, "fb fixed")
    assert not failed & set(p.name for p in homes.iterdir()), failed
