"""`dotcloud`: the developer's client (SPEC section 9).

    dotcloud [--host H] [--port N] push [APP]     push the current directory
    dotcloud [--host H] [--port N] COMMAND ...    any SSH command (logs, status, var, scale, ...)

`push` uses git when the directory is a repository. Otherwise it keeps a
private git directory for this folder in ~/.cache/dotcloud and commits the
folder there as `rsync-<milliseconds>`, so each upload sends only what
changed since the last one. A Mercurial working copy goes the same way, but
only with the files hg tracks (clean, modified or added: never unknown,
ignored by .hgignore, or removed), as they are in the working copy, named
after its changeset as `hg id -i` says it: `hg-<12 hex digits>`, with a `+`
when the working copy has uncommitted changes. Everything else runs `ssh -p PORT dotcloud@HOST
COMMAND ...` with the arguments passed as they are. DOTCLOUD_SSH_COMMAND
(like GIT_SSH_COMMAND) picks the ssh command and its options for both.
"""
import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from . import names
from .errors import DotcloudError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dotcloud", description="Talk to a dotcloud platform.")
    p.add_argument("--host", default=os.environ.get("DOTCLOUD_HOST", "localhost"))
    p.add_argument("--port", type=int, default=int(os.environ.get("DOTCLOUD_PORT", "2222")))
    p.add_argument("command", help="push, or any SSH command (try: help)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        if args.command == "push":
            return push(args.host, args.port, args.args)
        return ssh(args.host, args.port, [args.command, *args.args])
    except DotcloudError as exc:
        print(f"dotcloud: {exc}", file=sys.stderr)
        return exc.exit_status


def ssh(host: str, port: int, command: list[str]) -> int:
    base = shlex.split(os.environ.get("DOTCLOUD_SSH_COMMAND", "ssh"))
    # The server splits the command line like a shell would, so quote each word.
    return subprocess.call([*base, "-p", str(port), f"dotcloud@{host}",
                            shlex.join(command)])


def push(host: str, port: int, rest: list[str]) -> int:
    here = Path.cwd()
    app = names.app(rest[0] if rest else _default_app(here))
    url = f"ssh://dotcloud@{host}:{port}/{app}"
    if "DOTCLOUD_SSH_COMMAND" in os.environ:
        os.environ.setdefault("GIT_SSH_COMMAND", os.environ["DOTCLOUD_SSH_COMMAND"])
    if _in_git_repo(here):
        return subprocess.call(["git", "push", url, "HEAD:refs/heads/main"])
    hg_root = _hg_root(here)
    if hg_root is not None:
        return _upload(hg_root, url, _hg_snapshot(hg_root))
    return _upload(here, url)


def _default_app(here: Path) -> str:
    name = "".join(c if c.isalnum() else "-" for c in here.name.lower()).strip("-")
    if not name or not name[0].isalpha():
        raise DotcloudError("cannot name the app after this directory; say: dotcloud push APP")
    return name[:40]


def _in_git_repo(here: Path) -> bool:
    return subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=here,
                          capture_output=True).returncode == 0


def _hg(root: Path, *args: str) -> subprocess.CompletedProcess:
    # HGPLAIN: the output as documented, whatever the user's hgrc says.
    return subprocess.run(["hg", *args], cwd=root, capture_output=True,
                          env=dict(os.environ, HGPLAIN="1"))


def _hg_root(here: Path) -> Path | None:
    """The root of the Mercurial working copy holding `here`; None outside one."""
    # Found without hg: a working copy must never go as a plain folder (its
    # .hg and ignored files with it) because hg is missing or fails.
    for directory in (here, *here.parents):
        if (directory / ".hg").is_dir():
            return directory
    return None


def _hg_snapshot(root: Path) -> tuple[str, list[bytes]]:
    """The upload's name and the files to upload (paths from the root)."""
    try:
        ident = _hg(root, "id", "-i")
        files = _hg(root, "status", "--modified", "--added", "--clean", "--no-status",
                    "--print0")
    except FileNotFoundError:
        raise DotcloudError(f"{root} is a Mercurial working copy; pushing it needs hg "
                            "(install Mercurial)") from None
    if ident.returncode != 0 or files.returncode != 0:
        why = (ident.stderr or files.stderr).decode("utf-8", "replace").strip().splitlines()
        first = why[0].removeprefix("abort: ") if why else "failed"
        raise DotcloudError(f"hg could not describe {root}: {first}")
    # Tracked files deleted from the disk without `hg remove` are not there to send.
    paths = [p for p in files.stdout.split(b"\0") if p and os.path.lexists(root / os.fsdecode(p))]
    return f"hg-{ident.stdout.decode().strip()}", paths


def _upload(here: Path, url: str, hg: tuple[str, list[bytes]] | None = None) -> int:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dotcloud"
    gitdir = cache / (hashlib.sha256(str(here).encode()).hexdigest()[:16] + ".git")
    env = dict(os.environ, GIT_DIR=str(gitdir), GIT_WORK_TREE=str(here),
               GIT_AUTHOR_NAME="dotcloud", GIT_AUTHOR_EMAIL="dotcloud@localhost",
               GIT_COMMITTER_NAME="dotcloud", GIT_COMMITTER_EMAIL="dotcloud@localhost")
    if not gitdir.exists():
        gitdir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", str(gitdir)], check=True)
        subprocess.run(["git", "config", "core.bare", "false"], env=env, check=True)
    if hg is None:
        revision = f"rsync-{int(time.time() * 1000)}"
        steps = [(["git", "add", "-A", "."], None)]
    else:
        # Exactly hg's list: git's own ignore rules play no part, nor .hg. The
        # index is kept between uploads, so unchanged files are not read again.
        revision, paths = hg
        known = subprocess.run(["git", "ls-files", "-z"], env=env, cwd=here,
                               capture_output=True).stdout.split(b"\0")
        gone = set(known) - set(paths) - {b""}
        steps = [(["git", "update-index", "--force-remove", "-z", "--stdin"],
                  b"\0".join(sorted(gone))),
                 (["git", "update-index", "--add", "-z", "--stdin"], b"\0".join(paths))]
    steps.append((["git", "commit", "-q", "--allow-empty", "-m", revision], None))
    for step, stdin in steps:
        if subprocess.run(step, env=env, cwd=here, input=stdin).returncode != 0:
            raise DotcloudError(f"could not record the upload ({' '.join(step[:2])} failed)")
    print(f"Uploading {here} as {revision}", flush=True)
    return subprocess.call(["git", "push", "--progress", url, "HEAD:refs/heads/main"], env=env,
                           cwd=here)


if __name__ == "__main__":
    sys.exit(main())
