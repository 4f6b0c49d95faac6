"""A uid per app: allocated in app_uid_range, kept, freed with the app, and
the range checked in config.yml (dotcloud.appusers, dotcloud.settings)."""
import os
import pwd

import pytest

from dotcloud import appusers, settings as settings_mod
from dotcloud.errors import UsageError
from dotcloud.state import Store


@pytest.fixture
def env(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.yml").write_text("app_uid_range: [61000, 61002]\n")
    s = settings_mod.load(data)
    store = Store(s.paths.db)
    yield s, store
    store.close()


def test_each_app_gets_its_own_uid_in_the_range_and_keeps_it(env):
    s, store = env
    a = appusers.allocate(store, s, "a")
    b = appusers.allocate(store, s, "b")
    assert 61000 <= a.uid <= 61002 and 61000 <= b.uid <= 61002
    assert a.uid != b.uid and a.gid == a.uid
    assert appusers.allocate(store, s, "a") == a
    assert appusers.lookup(store, "a") == a


def test_destroy_frees_the_uid_and_it_comes_back_last(env):
    s, store = env
    a = appusers.allocate(store, s, "a")
    appusers.allocate(store, s, "b")
    store.create_app("a", "alice")
    store.delete_app("a")
    assert appusers.lookup(store, "a") is None
    c = appusers.allocate(store, s, "c")
    assert c.uid not in (a.uid,)         # the next one first, not the one just freed
    (s.paths.tool_cache(a.uid) / "npm-cache").mkdir(parents=True)   # a's downloads
    d = appusers.allocate(store, s, "d")  # the range wraps around: now the freed one
    assert d.uid == a.uid
    assert not s.paths.tool_cache(a.uid).exists()     # not d's to run


def test_a_full_range_is_a_clear_error_and_changes_nothing(env):
    s, store = env
    for app in ("a", "b", "c"):
        appusers.allocate(store, s, app)
    with pytest.raises(appusers.NoUidLeft, match=r"no free uid left in app_uid_range "
                                                 r"61000-61002 .*config.yml"):
        appusers.allocate(store, s, "d")
    assert appusers.lookup(store, "d") is None


def test_an_app_from_an_older_version_gets_one_on_first_need(env):
    s, store = env
    store.create_app("old", "alice")
    assert appusers.lookup(store, "old") is None
    user = appusers.of(store, s, "old")
    assert appusers.lookup(store, "old") == user


@pytest.mark.skipif(os.geteuid() != 0, reason="host accounts are made only as root")
def test_the_host_account_is_named_by_the_number(env):
    s, store = env
    user = appusers.of(store, s, "named")
    assert pwd.getpwuid(user.uid).pw_name == f"dc-{user.uid}"
    assert pwd.getpwuid(user.uid).pw_gid == user.gid


@pytest.mark.parametrize("value", ["[1, 5]", "[62000, 61000]", "[61000]", "['a', 'b']",
                                   "[61000, 4294967295]"])
def test_a_bad_range_is_a_one_line_error(tmp_path, value):
    (tmp_path / "config.yml").write_text(f"app_uid_range: {value}\n")
    with pytest.raises(UsageError) as info:
        settings_mod.load(tmp_path)
    assert "config.yml: 'app_uid_range' must be two uids" in str(info.value)
    assert "\n" not in str(info.value)
