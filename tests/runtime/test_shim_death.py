"""A shim's death explains itself and does not fail a deploy by itself: the
shim's stderr goes to a file of its instance (appended, each start marked,
bounded), the runtime logs a dead shim's last lines, and the deploy's wait
takes a shim that died without an exit of the app for the runtime's to
replace (a second later), failing only on its crash loop or an exit of the
app."""
import json
import os
import time
from types import SimpleNamespace

from hooks import health
from runtime import shimctl


def wait_dead(pid: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    raise AssertionError("the shim did not exit")


def test_a_shims_stderr_is_kept_and_its_last_words_read_back(tmp_path):
    err = tmp_path / "instances" / "7" / "shim.err"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"instance": "x"}))
    assert wait_dead(shimctl.spawn(bad, err)) == 2
    first = shimctl.last_stderr(err)
    assert len(first) == 1 and first[0].startswith("shim: invalid spec:"), first
    # Appended: the next start's words are its own, the earlier ones kept.
    bad.write_text("not json")
    assert wait_dead(shimctl.spawn(bad, err)) == 2
    assert shimctl.last_stderr(err) != first and shimctl.last_stderr(err)
    assert err.read_text().count(shimctl.ERR_MARK) == 2
    assert shimctl.last_stderr(tmp_path / "none.err") == []


def test_the_stderr_file_is_cut_to_its_tail_at_a_start_once_too_big(tmp_path):
    err = tmp_path / "shim.err"
    err.write_bytes(b"old line\n" * (shimctl.ERR_MAX // 9 + 100))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    wait_dead(shimctl.spawn(bad, err))
    size = err.stat().st_size
    assert size <= shimctl.ERR_KEEP + 4096, size
    assert err.read_text().startswith("old line\n")          # whole lines kept
    assert shimctl.last_stderr(err)[0].startswith("shim: invalid spec:")


def test_without_a_file_the_shims_stderr_goes_nowhere(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert wait_dead(shimctl.spawn(bad)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["bad.json"]


def check(tmp_path, status) -> health.Check:
    path = tmp_path / "status.json"
    if status is not None:
        path.write_text(json.dumps(status))
    return health.Check(1, "www.0", True, "/", "h", 10, 0.1, path)


def inst(state, restarts=0, last_exit=None):
    return SimpleNamespace(state=state, restarts=restarts, last_exit=last_exit,
                           started=time.time() - 10)


def test_a_dead_shim_is_waited_for_and_an_app_exit_is_not(tmp_path):
    running = {"processes": {"web": {"state": "running", "last_exit": None}}}
    exited = {"processes": {"web": {"state": "backoff", "last_exit": 3}}}
    # The shim died before it ever reported, or after: the runtime starts
    # another a second later, the new shim counting one restart.
    assert not health._failed(inst("backoff"), check(tmp_path, None))
    assert not health._failed(inst("starting", restarts=1), check(tmp_path, running))
    # The app exited (the shim said so), or the shims died in a loop: failed.
    assert health._failed(inst("backoff", last_exit=3), check(tmp_path, exited))
    assert health._failed(inst("crashed"), check(tmp_path, running))
    assert "its shim died again and again" in health._exit(None, check(tmp_path, running))
    assert health._exit(3, check(tmp_path, exited)) == "exit status 3"
    # A worker whose shim was replaced is ready once its app runs long enough.
    assert health._worker_ready(inst("running", restarts=1), check(tmp_path, running))
    assert not health._worker_ready(inst("running", restarts=1), check(tmp_path, exited))
