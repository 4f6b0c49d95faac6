"""max_release_bytes end to end: a build that writes without end is stopped while it
writes, refused with that reason, and leaves nothing on disk (its release, its
dependency cache entry), on a platform whose config.yml sets the limit to 100 MiB."""
import json
import os
import re

import pytest
from platform_helpers import Platform, git_repo

from buildpacks.disklimit import disk_usage

MiB = 1024 * 1024
REFUSED = "build failed: the release is larger than max_release_bytes (100.0 MiB)"
# Never ends by itself: only the limit (or the build timeout, far away) stops it.
ENDLESS = "while :; do head -c 1048576 /dev/urandom >> big.bin; done"


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    root = tmp_path_factory.mktemp("limited")
    (root / "data").mkdir()
    (root / "data" / "config.yml").write_text(
        f"max_release_bytes: {100 * MiB}\nbuild_timeout: 300\n")
    p = Platform(data=root / "data", home=root)
    p.start()
    p.add_user("alice", admin=True)
    yield p
    p.stop()


def static_site(text: str, buildfile: str = "") -> dict:
    files = {"index.html": f"<p>{text}</p>\n"}
    if buildfile:
        files["dotcloud.yml"] = buildfile
    return files


def releases(p, app):
    root = p.data / "releases" / app
    return sorted(d.name for d in root.iterdir()) if root.exists() else []


def test_a_prebuild_writing_without_end_is_stopped_and_refused(limited, tmp_path):
    p = limited
    repo = git_repo(tmp_path / "writer", static_site("first"))
    assert p.push("alice", repo, "writer").code == 0
    before = disk_usage([p.data])

    git_repo(repo, static_site("second", f"www:\n  type: static\n  prebuild: {ENDLESS}\n"))
    r = p.push("alice", repo, "writer")
    assert r.code != 0 and REFUSED in r.err, r.err
    assert "Build completed" not in r.err
    after = disk_usage([p.data])
    print(f"data directory: {before / MiB:.1f} MiB before, {after / MiB:.1f} MiB after")
    # The database and the logs grow by a few records; the 100+ MiB are gone.
    assert after - before < 5 * MiB
    assert releases(p, "writer") == ["v1"]
    assert p.get("writer.localhost")[:2] == (200, "<p>first</p>\n")
    revisions = json.loads(p.ssh("alice", "revisions", "writer", "--json").out)
    failed = [r for r in json.dumps(revisions).split('"') if "max_release_bytes" in r]
    assert failed and failed[0].startswith("build failed: the release is larger"), revisions


def test_an_install_writing_into_its_cache_entry_is_stopped_and_the_entry_removed(
        limited, tmp_path):
    p = limited
    package = {"name": "filler", "version": "1.0.0", "private": True,
               "scripts": {"postinstall": ENDLESS, "start": "node server.js"}}
    repo = git_repo(tmp_path / "filler", {
        "package.json": json.dumps(package), "server.js": "require('http')\n"})
    before = disk_usage([p.data])
    r = p.push("alice", repo, "filler")
    assert r.code != 0 and REFUSED in r.err, r.err
    after = disk_usage([p.data])
    print(f"data directory: {before / MiB:.1f} MiB before, {after / MiB:.1f} MiB after")
    assert after - before < 5 * MiB
    assert releases(p, "filler") == []
    node = p.data / "cache" / "node"
    left = [e.name for e in node.iterdir() if not e.name.startswith(".")
            and not (e / ".complete").exists()] if node.exists() else []
    assert left == [], "the refused cache entry stayed"


def test_a_tree_bigger_than_the_limit_is_refused_while_exported(limited, tmp_path):
    # One 30 MiB blob named four times: a small push, a release past the limit.
    repo = tmp_path / "copies"
    git_repo(repo, static_site("copies"))
    blob = "x" * (30 * MiB)
    git_repo(repo, {f"copy{i}.txt": blob for i in range(4)})
    r = limited.push("alice", repo, "copies")
    assert r.code != 0 and REFUSED in r.err, r.err
    assert releases(limited, "copies") == []


def test_a_prebuild_filling_its_tmpdir_is_stopped_and_its_scratch_emptied(limited, tmp_path):
    repo = git_repo(tmp_path / "scratchy", static_site(
        "scratchy", f'www:\n  type: static\n  prebuild: echo "scratch=$TMPDIR"; cd "$TMPDIR" && '
                    f'{ENDLESS}\n'))
    r = limited.push("alice", repo, "scratchy")
    # The echoed path (the hook's command line is shown too, unexpanded).
    scratch = re.search(r"scratch=(/\S*|)\s*$", r.err, re.M).group(1)
    if not scratch:
        pytest.skip("builds run as the platform's user here: TMPDIR is the operator's")
    assert r.code != 0 and REFUSED in r.err, r.err
    assert scratch.startswith(str(limited.data)) and not os.path.exists(scratch)
    assert releases(limited, "scratchy") == []
