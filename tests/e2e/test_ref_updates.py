"""Ref updates on branches that deploy nothing are compare-and-swap, as git's own are."""
import hashlib
import subprocess

from platform_helpers import git_repo, python_app

ZERO = "0" * 40
EMPTY_PACK = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00"
EMPTY_PACK += hashlib.sha1(EMPTY_PACK).digest()


def pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


def receive(platform, app, updates, pack=b""):
    """Send ref updates by hand (report-status, no side band); the status lines."""
    argv = platform.ssh_command("alice").split() + [
        "-p", str(platform.ssh_port), "dotcloud@127.0.0.1", f"git-receive-pack '{app}'"]
    lines = [f"{old} {new} {ref}".encode() for old, new, ref in updates]
    lines[0] += b"\0report-status delete-refs"
    request = b"".join(pkt(line + b"\n") for line in lines) + b"0000" + pack
    r = subprocess.run(argv, input=request, capture_output=True, timeout=60)
    return r.stdout.decode("latin-1")


def branches(platform, app):
    out = subprocess.run(["git", "ls-remote", platform.remote(app)], env=platform.git_env("alice"),
                         capture_output=True, text=True, timeout=60).stdout
    return {ref: sha for sha, ref in (line.split("\t") for line in out.splitlines())}


def test_stale_updates_and_missing_deletes_are_answered_ng(platform, tmp_path):
    app = "casrefs"
    repo = git_repo(tmp_path / "r", python_app("cas"))
    assert platform.push("alice", repo, app, branch="feature").code == 0
    first = branches(platform, app)["refs/heads/feature"]
    git_repo(repo, {"more.txt": "x"}, "second")
    assert platform.push("alice", repo, app, branch="feature").code == 0
    second = branches(platform, app)["refs/heads/feature"]
    assert second != first

    # A client that still believes the branch is at `first` loses its update.
    out = receive(platform, app, [(first, first, "refs/heads/feature")], EMPTY_PACK)
    assert "ng refs/heads/feature fetch first" in out, out
    out = receive(platform, app, [(first, ZERO, "refs/heads/feature")])
    assert "ng refs/heads/feature fetch first" in out, out
    # Creating a branch that exists, and deleting one that does not.
    out = receive(platform, app, [(ZERO, first, "refs/heads/feature")], EMPTY_PACK)
    assert "ng refs/heads/feature fetch first" in out, out
    out = receive(platform, app, [(first, ZERO, "refs/heads/nope")])
    assert "ng refs/heads/nope no such ref" in out, out
    assert branches(platform, app) == {"refs/heads/feature": second}

    # Up-to-date updates go through, and so does a real delete.
    out = receive(platform, app, [(second, first, "refs/heads/feature"),
                                  (ZERO, second, "refs/heads/other")], EMPTY_PACK)
    assert "ok refs/heads/feature" in out and "ok refs/heads/other" in out, out
    assert branches(platform, app) == {"refs/heads/feature": first,
                                       "refs/heads/other": second}
    r = subprocess.run(["git", "push", platform.remote(app), ":other"], cwd=repo,
                       env=platform.git_env("alice"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert branches(platform, app) == {"refs/heads/feature": first}
