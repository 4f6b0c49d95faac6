"""The content-addressed dependency cache: fill once, never touch a complete entry."""
import os
import threading
import time

import pytest

from buildpacks.cache import Entry, content_key, ensure, prune, record_use, tree_size


def filler(calls, content=b"data", delay=0.0):
    def fill(path):
        calls.append(path)
        time.sleep(delay)
        path.mkdir()
        (path / "dep").write_bytes(content)
    return fill


def test_key_separates_parts():
    assert content_key("ab", "c") != content_key("a", "bc")
    assert content_key("x") == content_key(b"x")
    assert len(content_key()) == 64


def test_fill_once_then_reuse(tmp_path):
    entry, calls = Entry(tmp_path / "python", content_key("k")), []
    assert ensure(entry, filler(calls)) is False
    assert entry.complete() and entry.size() == 4
    assert ensure(entry, filler(calls)) is True
    assert len(calls) == 1


def test_incomplete_entry_is_rebuilt(tmp_path):
    entry, calls = Entry(tmp_path / "python", "k"), []
    entry.path.mkdir(parents=True)
    (entry.path / "half-written").write_text("x")
    assert not entry.complete()
    assert ensure(entry, filler(calls)) is False
    assert not (entry.path / "half-written").exists()
    assert (entry.path / "dep").exists()


def test_failed_fill_leaves_nothing_behind(tmp_path):
    entry = Entry(tmp_path / "node", "k")

    def fail(path):
        path.mkdir()
        (path / "partial").write_text("x")
        raise RuntimeError("npm exploded")
    with pytest.raises(RuntimeError):
        ensure(entry, fail)
    assert not entry.path.exists() and not entry.complete()


def test_concurrent_builds_of_one_key_fill_once(tmp_path):
    entry, calls, waits, results = Entry(tmp_path / "python", "k"), [], [], []

    def build():
        results.append(ensure(entry, filler(calls, delay=0.3), on_wait=lambda: waits.append(1)))
    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(results) == [False, True, True, True]
    # Each build says at most once that it waits; the filler may wait too, when
    # it upgrades to the exclusive lock while another build holds a shared one.
    assert len(waits) <= len(threads)


def test_tree_size_counts_files_not_symlink_targets(tmp_path):
    (tmp_path / "a").write_bytes(b"12345")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"123")
    (tmp_path / "link").symlink_to("/usr/bin/env")
    assert tree_size(tmp_path) == 8 + len("/usr/bin/env")


def aged(entry, seconds):
    old = time.time() - seconds
    os.utime(entry.lock_path, (old, old))


def test_prune_keeps_entries_in_use_or_recently_used(tmp_path):
    cache, calls = tmp_path / "cache", []
    used, idle, recent = (Entry(cache / "python", k) for k in ("used", "idle", "recent"))
    node_idle = Entry(cache / "node", "idle")
    for entry in (used, idle, recent, node_idle):
        ensure(entry, filler(calls))
    for entry in (used, idle, node_idle):
        aged(entry, 30 * 86400)
    release = tmp_path / "releases" / "app" / "v1"
    record_use(release, "www-python", used)
    record_use(release, "www-python", used)  # recording twice is harmless
    removed = prune(cache, [release, tmp_path / "releases" / "app" / "v0-gone"], min_idle=86400)
    assert sorted(removed) == sorted([idle.path, node_idle.path])
    assert used.complete() and recent.complete() and not idle.path.exists()
    # a later build of a pruned entry simply builds it again
    assert ensure(idle, filler(calls)) is False and idle.complete()


def test_prune_skips_an_entry_being_built(tmp_path):
    cache = tmp_path / "cache"
    entry = Entry(cache / "python", "busy")
    started, release = threading.Event(), threading.Event()

    def slow_fill(path):
        path.mkdir()
        started.set()
        release.wait(10)
    t = threading.Thread(target=ensure, args=(entry, slow_fill))
    t.start()
    started.wait(10)
    aged(entry, 30 * 86400)
    assert prune(cache, [], min_idle=0) == []
    release.set()
    t.join()
    assert entry.complete()


def test_reuse_marks_the_entry_used(tmp_path):
    entry = Entry(tmp_path / "python", "k")
    ensure(entry, filler([]))
    aged(entry, 30 * 86400)
    assert ensure(entry, filler([])) is True
    assert prune(tmp_path, [], min_idle=86400) == []


def test_entry_without_a_size_record_counts_zero(tmp_path):
    entry = Entry(tmp_path / "python", "k")
    ensure(entry, filler([]))
    (entry.path / ".size").write_text("garbage")
    assert entry.size() == 0
