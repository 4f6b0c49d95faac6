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
