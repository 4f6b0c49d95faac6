"""gitserver.packs: the temporary packs of refused pushes go, those being received stay."""
from gitserver.packs import remove_stale


def test_only_temporary_packs_no_receive_holds_are_removed(tmp_path):
    objects = tmp_path / "objects"
    (objects / "pack").mkdir(parents=True)
    receiving = objects / "tmp_pack_live"
    left = objects / "tmp_pack_dead"
    left_pack = objects / "pack" / "tmpdead.pack"
    kept = objects / "pack" / "pack-abc.pack"
    for path in (left, left_pack, kept):
        path.write_bytes(b"x" * 100)
    with open(receiving, "wb") as f:
        f.write(b"y" * 10)
        assert remove_stale(tmp_path) == 200
        assert receiving.exists() and kept.exists()
        assert not left.exists() and not left_pack.exists()
    assert remove_stale(tmp_path) == 10
    assert remove_stale(tmp_path / "missing") == 0
