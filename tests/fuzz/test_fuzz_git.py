"""pkt-lines into receive-pack and upload-pack: the real handlers, in process."""
import io
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dotcloud.errors import DotcloudError, NotFound
from dotcloud.settings import load
from dotcloud.state import Store
from gitserver import git

APP = "fuzzed"
ZERO = b"0" * 40


class BytesChannel:
    """What git.serve reads and writes through, fed from bytes."""

    def __init__(self, data: bytes):
        self._in = io.BytesIO(data)
        self.out = io.BytesIO()
        self.max_bytes = None

    def read(self, n: int = -1) -> bytes:
        return self._in.read(n)

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def stderr(self, text: str) -> None:
        self.out.write(text.encode())


def pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


_data = Path(tempfile.mkdtemp(prefix="fuzz-git-"))
SETTINGS = load(_data)
STORE = Store(SETTINGS.paths.db)
STORE.add_user("alice")
STORE.create_app(APP, "alice")
STORE.db.execute("PRAGMA synchronous=OFF")   # audit rows by the million; durability is moot here

sha = st.one_of(st.just(ZERO), st.binary(min_size=20, max_size=20).map(lambda b: b.hex().encode()),
                st.binary(max_size=44))
ref = st.one_of(st.sampled_from([b"refs/heads/main", b"refs/heads/x", b"HEAD", b"refs/../x"]),
                st.binary(max_size=30))
caps = st.lists(st.sampled_from([b"report-status", b"side-band-64k", b"delete-refs", b"atomic",
                                 b"ofs-delta", b"quiet", b"agent=x", b"object-format=sha256"]),
                max_size=4).map(b" ".join)
update = st.builds(lambda o, n, r, c: pkt(o + b" " + n + b" " + r + b"\0" + c + b"\n"),
                   sha, sha, ref, caps)
want = st.builds(lambda s, c: pkt(b"want " + s + b" " + c + b"\n"), sha, caps)
line = st.one_of(update, want, st.binary(max_size=60).map(pkt), st.just(b"0000"),
                 st.just(b"0001"), st.just(b"done\n"), st.binary(max_size=8))
stream = st.one_of(st.binary(max_size=300),
                   st.lists(line, max_size=6).map(b"".join),
                   st.tuples(st.lists(line, max_size=3).map(b"".join),
                             st.just(b"0000PACK\x00\x00\x00\x02"), st.binary(max_size=64))
                   .map(b"".join))


@given(st.sampled_from(["git-receive-pack", "git-upload-pack"]), stream)
def test_any_protocol_input_is_served_or_refused_with_a_clear_error(command, data):
    try:
        status = git.serve(SETTINGS, STORE, "alice", command, APP, BytesChannel(data))
        assert status in (0, 1)
    except DotcloudError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert not isinstance(exc, NotFound), "the harness's own app must be served"
    # Whatever came in, nothing moved and nothing was left behind.
    objects = git.repo_path(SETTINGS, APP) / "objects"
    assert not list(objects.glob("tmp_pack_*"))
