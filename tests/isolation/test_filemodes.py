"""Who may touch what in DATA (dotcloud.filemodes), and the shared cache's
entries sealed before they count as complete (buildpacks.cache)."""
import os
import stat
import subprocess
from pathlib import Path

import pytest
from platform_helpers import open_dir

from buildpacks import cache
from dotcloud.datadir import DataDir
from dotcloud.filemodes import closed_above, own_tree, seal, secure

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners change only as root")
UID = 61991


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def as_user(*argv) -> int:
    return subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                           *argv], capture_output=True).returncode


def test_secure_closes_the_platform_files_and_leaves_passages(tmp_path):
    paths = DataDir(tmp_path / "data")
    paths.ensure()
    paths.db.write_text("")
    paths.host_key.write_text("")
    (paths.cache / "python").mkdir()
    closed = secure(paths)
    assert mode(paths.root) == 0o711
    for private in ("run", "repos", "instances", "logs"):
        assert mode(paths.root / private) == 0o700
    assert mode(paths.releases_root) == mode(paths.cache) == mode(paths.cache / "python") == 0o711
    assert mode(paths.db) == mode(paths.host_key) == 0o600
    # pytest's own temporary root is 0700: named, so `up` can say what to open.
    assert closed and all(not p.stat().st_mode & 0o001 for p in closed)
    assert closed_above(Path("/")) == []


@needs_root
def test_a_sealed_tree_is_roots_and_read_only_but_links_to_the_cache_keep_theirs():
    base = open_dir()
    entry_file = base / "entry.js"
    entry_file.write_text("shared")
    entry_file.chmod(0o444)                   # a sealed cache entry's file, root's
    tree = base / "release"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "app.py").write_text("x")
    (tree / "sub" / "app.py").chmod(0o4775)   # setuid: gone once sealed
    os.link(entry_file, tree / "sub" / "linked.js")
    os.symlink("/etc/passwd", tree / "link")
    own_tree(tree, UID, UID)
    assert os.stat(tree / "sub" / "app.py").st_uid == UID
    assert os.stat(entry_file).st_uid == 0    # the hard link is left alone
    assert as_user("touch", str(tree / "sub" / "new")) == 0
    seal(tree, gid=UID, others=False)
    st = os.stat(tree / "sub" / "app.py")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, UID, 0o550)
    assert mode(tree / "sub") == 0o550 and mode(entry_file) == 0o444
    assert os.stat(entry_file).st_gid == 0
    assert as_user("touch", str(tree / "sub" / "new2")) != 0
    assert as_user("sh", "-c", f"echo x >> {tree / 'sub' / 'app.py'}") != 0
    assert as_user("cat", str(tree / "sub" / "app.py")) == 0        # its group reads it
    assert os.readlink(tree / "link") == "/etc/passwd"


@needs_root
def test_a_cache_entry_is_filled_by_the_builder_then_sealed_for_everyone():
    root = open_dir() / "python"
    entry = cache.Entry(root, "k" * 64)

    def fill(path):
        assert path.is_dir() and os.stat(path).st_uid == UID
        assert as_user("sh", "-c", f"echo code > {path}/mod.py && touch {path}/.complete") == 0

    assert cache.ensure(entry, fill, owner=(UID, UID)) is False
    assert entry.complete()
    for path in (entry.path, entry.path / "mod.py"):
        st = os.stat(path)
        assert st.st_uid == 0 and not st.st_mode & 0o222
    assert as_user("cat", str(entry.path / "mod.py")) == 0          # shared: readable
    assert as_user("sh", "-c", f"echo evil >> {entry.path}/mod.py") != 0
    assert as_user("touch", str(entry.path / "evil")) != 0


@needs_root
def test_a_complete_mark_the_builder_wrote_itself_does_not_count():
    root = open_dir() / "python"
    entry = cache.Entry(root, "j" * 64)
    entry.path.mkdir(parents=True)
    (entry.path / cache.COMPLETE).write_text("")
    os.chown(entry.path / cache.COMPLETE, UID, UID)      # a build cut short left it
    assert not entry.complete()


@needs_root
def test_up_says_which_directory_keeps_app_users_out(tmp_path, capsys):
    from dotcloud.settings import load
    from dotcloud.supervisor import _secure_data
    _secure_data(load(tmp_path / "data"))       # under pytest's 0700 directory
    err = capsys.readouterr().err
    names = " ".join(str(p) for p in reversed(closed_above(tmp_path / "data")))
    assert names
    assert err == (f"dotcloud: warning: apps run as their own users and cannot reach the data "
                   f"directory: closed to others: {names} (chmod o+x {names})\n")
