"""gitserver.git.StrictRefs: a compare-and-swap that loses raises, so dulwich answers ng."""
import pytest
from dulwich.repo import Repo

from gitserver.git import LostUpdate, StrictRefs

A, B, C = b"a" * 40, b"b" * 40, b"c" * 40


def test_lost_races_raise_and_reached_values_succeed(tmp_path):
    refs = StrictRefs(Repo.init_bare(str(tmp_path), mkdir=False).refs)
    assert refs.set_if_equals(b"refs/heads/x", b"0" * 40, A)          # create
    assert refs.set_if_equals(b"refs/heads/x", A, B)                  # fast update
    assert refs.set_if_equals(b"refs/heads/x", A, B)                  # already there: ok
    with pytest.raises(LostUpdate):
        refs.set_if_equals(b"refs/heads/x", A, C)                     # stale old value
    assert refs.read_ref(b"refs/heads/x") == B and b"refs/heads/x" in refs
    with pytest.raises(LostUpdate):
        refs.remove_if_equals(b"refs/heads/x", A)
    assert refs.remove_if_equals(b"refs/heads/x", B)
    assert refs.remove_if_equals(b"refs/heads/x", B)                  # already gone: ok
    assert b"refs/heads/x" not in refs
    assert isinstance(LostUpdate("x"), OSError)    # what dulwich turns into "failed to write"
