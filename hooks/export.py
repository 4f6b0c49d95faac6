"""Writes the tree of a pushed commit into a release directory, with dulwich.

Only regular files, executables and symlinks that stay inside the tree are
written; submodules are skipped. Paths come from git tree entries, which
cannot contain '/' or be '..', but we check anyway before writing.
"""
import os
import re
import stat
from pathlib import Path

from dulwich.objects import Commit, Tree
from dulwich.repo import Repo

from buildpacks.disklimit import too_large
from dotcloud.errors import BuildError


def export_tree(repo_path: Path, sha: str, dest: Path, limit: int | None = None) -> int:
    """Export commit `sha` into `dest` (created); return bytes written.

    Past `limit` bytes it stops with BuildError: a small pack can name one
    big blob in many places, and the release is bounded (max_release_bytes).
    """
    repo = Repo(str(repo_path))
    try:
        commit = repo[sha.encode()]
    except KeyError:
        raise BuildError(f"revision {sha[:7]} is not in the repository") from None
    if not isinstance(commit, Commit):
        raise BuildError(f"{sha[:7]} is not a commit")
    dest.mkdir(parents=True, exist_ok=False)
    total = _write_tree(repo, repo[commit.tree], dest, limit)
    repo.close()
    return total


# The names the dotcloud client gives its uploads (dotcloud/client.py).
UPLOAD_NAME = re.compile(r"(rsync-\d{1,20}|hg-[0-9a-f]{12}\+?)\n?")


def upload_name(repo_path: Path, sha: str) -> str | None:
    """The name the dotcloud client gave the upload of commit `sha`, which is
    its whole message; None for any other commit."""
    repo = Repo(str(repo_path))
    try:
        commit = repo[sha.encode()]
        message = commit.message.decode("utf-8", "replace") if isinstance(commit, Commit) else ""
    except KeyError:
        message = ""
    finally:
        repo.close()
    found = UPLOAD_NAME.fullmatch(message)
    return found.group(1) if found else None


def _write_tree(repo: Repo, tree: Tree, dest: Path, limit: int | None, total: int = 0) -> int:
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", "surrogateescape")
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise BuildError(f"refusing a tree entry named {name!r}")
        target = dest / name
        mode = entry.mode
        if stat.S_ISDIR(mode):
            target.mkdir()
            total = _write_tree(repo, repo[entry.sha], target, limit, total)
        elif stat.S_ISLNK(mode):
            link = repo[entry.sha].data.decode("utf-8", "surrogateescape")
            os.symlink(link, target)
        elif stat.S_ISREG(mode):
            data = repo[entry.sha].data
            total += len(data)
            if limit is not None and total > limit:
                raise too_large(limit)
            with open(target, "wb") as f:
                f.write(data)
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
        # gitlinks (submodules) are skipped: their commits are not in this repo
    return total
