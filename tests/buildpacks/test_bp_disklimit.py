"""A build's disk limit: what counts toward a release, the check, and steps stopped past it."""
import os
import time

import pytest
import yaml

from buildpacks import cache
from buildpacks.disklimit import Bounded, DiskLimit, disk_usage, human, too_large
from buildpacks.steps import check_step
from dotcloud.errors import BuildError, UsageError
from dotcloud.settings import load
from runtime.executor import HOST

MiB = 1024 * 1024


def gone(pid, timeout=15.0):
    """True once pid has died (SIGKILL is delivered, not awaited: poll a little)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def write(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))     # random: no filesystem stores it smaller
    return path


def test_disk_usage_counts_blocks_each_file_once_and_follows_no_link(tmp_path):
    empty = disk_usage([tmp_path])
    big = write(tmp_path / "a" / "big", 2 * MiB)
    one = disk_usage([tmp_path])
    assert 2 * MiB <= one - empty < 2 * MiB + 64 * 1024
    os.link(big, tmp_path / "hard")
    (tmp_path / "soft").symlink_to(big)
    (tmp_path / "outside").symlink_to("/usr")
    assert disk_usage([tmp_path]) - one < 16 * 1024, "a hard link and symlinks add no file"
    assert disk_usage([tmp_path, tmp_path / "a", tmp_path / "missing"]) == disk_usage([tmp_path])
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1024 * MiB)
    assert disk_usage([tmp_path]) - one < 16 * 1024, "a sparse file takes no disk"


def test_a_release_counts_its_directory_the_entries_it_uses_and_those_it_fills(tmp_path):
    release, cache_dir = tmp_path / "releases" / "app" / "v1", tmp_path / "cache"
    write(release / "src" / "app.bin", MiB)
    limit = DiskLimit(3 * MiB, release)
    alone = limit.measure()
    used = cache.Entry(cache_dir / "python", "a" * 64)
    cache.ensure(used, lambda path: write(path / "lib.so", MiB) and None)
    cache.record_use(release, "www-python", used)
    with_used = limit.measure()
    assert MiB <= with_used - alone < MiB + 64 * 1024

    seen = []

    def fill(path):
        write(path / "node_modules" / "big", MiB)
        seen.append(limit.measure())
        write(path / "node_modules" / "bigger", 2 * MiB)
        limit.check(force=True)
    with pytest.raises(BuildError) as caught:
        cache.ensure(cache.Entry(cache_dir / "node", "b" * 64), fill)
    assert str(caught.value) == "the release is larger than max_release_bytes (3.0 MiB)"
    assert MiB <= seen[0] - with_used < MiB + 64 * 1024
    assert not (cache_dir / "node" / ("b" * 64)).exists(), "the refused entry is removed"
    assert cache.filling() == []
    assert limit.measure() == with_used and limit.peak >= with_used + 3 * MiB


def test_the_builds_own_scratch_counts(tmp_path):
    release, scratch = tmp_path / "v1", tmp_path / "users" / "60001" / "tmp"
    release.mkdir()
    write(scratch / "pip-build" / "wheel", 2 * MiB)
    assert DiskLimit(MiB, release).measure() < MiB
    with pytest.raises(BuildError, match="larger than max_release_bytes"):
        DiskLimit(MiB, release, scratch=[scratch]).check()


def test_the_check_measures_only_when_due():
    now = [100.0]
    limit = DiskLimit(10, "/nonexistent", clock=lambda: now[0])
    walks = []
    limit.measure = lambda: walks.append(now[0]) or 0
    for _ in range(5):
        limit.check()
    assert walks == [100.0]
    now[0] += 0.2
    limit.check()
    limit.check(force=True)
    assert walks == [100.0, 100.2, 100.2]


def test_a_step_writing_without_end_is_stopped_with_its_whole_group(tmp_path):
    release = tmp_path / "v1"
    release.mkdir()
    bounded = Bounded(HOST, DiskLimit(8 * MiB, release))
    lines = []
    # Never ends by itself: only the limit (or the 120 s deadline) stops it.
    script = ("sleep 300 & echo pid=$!; "
              "while :; do head -c 1048576 /dev/urandom >> big; done")
    started = time.monotonic()
    with pytest.raises(BuildError) as caught:
        check_step("prebuild", ("/bin/sh", "-c", script), cwd=release, env={"PATH": "/usr/bin:/bin"},
                   timeout=120, log=lines.append, executor=bounded)
    assert str(caught.value) == "the release is larger than max_release_bytes (8.0 MiB)"
    assert time.monotonic() - started < 120, "stopped by the limit, not the deadline"
    assert gone(int(lines[0].removeprefix("pid="))), "the step's background process outlived it"
    assert 8 * MiB < (release / "big").stat().st_size


def test_bounded_keeps_the_executors_own_answers(tmp_path):
    bounded = Bounded(HOST, DiskLimit(MiB, tmp_path))
    assert (bounded.python, bounded.identity, bounded.on_host) == \
        (HOST.python, HOST.identity, HOST.on_host)
    assert bounded.host is bounded

    class Elsewhere:
        on_host, image, host = False, "python:3.12-slim", HOST
    there = Bounded(Elsewhere(), DiskLimit(MiB, tmp_path))
    assert there.image == "python:3.12-slim", "what only some executors have is read through"
    assert isinstance(there.host, Bounded) and there.host.inner is HOST
    assert bounded.tool("sh", "/usr/bin:/bin").endswith("/sh")
    lines = []
    assert bounded.run(("/bin/echo", "small"), cwd=tmp_path, env={}, timeout=10,
                       on_line=lines.append) == 0
    assert lines == ["small"]


def test_sizes_read_as_people_write_them():
    assert [human(n) for n in (2 * 1024 ** 3, 100 * MiB, 1536, 10)] == \
        ["2.0 GiB", "100.0 MiB", "1.5 KiB", "10 bytes"]
    assert str(too_large(2 * 1024 ** 3)) == \
        "the release is larger than max_release_bytes (2.0 GiB)"


@pytest.mark.parametrize("value", ["0", "-5", "2G", "true", "1.5"])
def test_max_release_bytes_must_be_a_positive_number_of_bytes(tmp_path, value):
    (tmp_path / "config.yml").write_text(f"max_release_bytes: {value}\n")
    with pytest.raises(UsageError) as caught:
        load(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}/config.yml: 'max_release_bytes' must be a number of bytes above 0, "
        f"e.g. 2147483648 (2 GiB); got {yaml.safe_load(value)!r}")
    assert "\n" not in str(caught.value)


def test_max_release_bytes_default_and_config(tmp_path):
    assert load(tmp_path / "a").max_release_bytes == 2 * 1024 ** 3
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.yml").write_text("max_release_bytes: 104857600\n")
    assert load(tmp_path / "b").max_release_bytes == 100 * MiB
