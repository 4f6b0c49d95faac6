"""The reconciler's decisions with a real store and real shims, without the
rest of the platform: one shim per instance however often it runs, a dead
shim replaced after what it left behind is stopped, rows it cannot start
backed off and reported, leftovers found by their tag only."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from resilience_helpers import alive, shims_for, wait_until

from dotcloud.settings import load
from dotcloud.state import Store
from dotcloud.supervisor import restart_delay
from runtime import leftovers
from runtime.reconcile import Reconciler

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
# A process in the shim's child's group that outlives a kill -9 of the shim:
# the shell dies with the shim (PDEATHSIG), its background sleep does not.
FORKER = ["/bin/sh", "-c", "sleep 300 & echo sleeper=$!; wait"]


@pytest.fixture
def rig(tmp_path):
    settings = load(tmp_path / "data")
    store = Store(settings.paths.db)
    rec = Reconciler(settings, store)
    yield settings, store, rec
    for inst in store.instances():
        store.set_desired([inst.id], "stop")
    rec.stop_all(5)
    for inst in store.instances():
        leftovers.send(leftovers.tag(settings.data, inst.id), signal.SIGKILL)
    _reap_children()
    store.close()


def add(store, argv, app="unit", number=0, desired="run", spec=None):
    inst = store.add_instance(app, 1, "www", number, 29000 + number, spec or {
        "processes": {"web": {"argv": argv, "cwd": "/", "env": ENV}},
        "env": ENV, "home": "/tmp", "log": f"{app}/www.{number}.log"})
    store.set_desired([inst.id], desired)
    return inst


def _sleepers(tag: str) -> list[int]:
    """Tagged `sleep` processes (found by name: pids wrap around)."""
    found = []
    for pid in leftovers.find(tag):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"):
                found.append(pid)
        except OSError:
            pass
    return found


def _reap_children():
    """The test process is the shims' parent here: reap them as the daemon would."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def test_back_to_back_passes_start_one_shim(rig):
    settings, store, rec = rig
    inst = add(store, ["/bin/sleep", "300"])
    for _ in range(5):
        rec.reconcile()
    assert len(shims_for(settings.data, inst.id)) == 1
    shim = store.instance(inst.id).pid
    wait_until(lambda: rec.reconcile() is not None and store.instance(inst.id).state == "running",
               10, "state running")
    assert shims_for(settings.data, inst.id) == [shim]


def test_a_fresh_reconciler_adopts_running_shims(rig):
    settings, store, rec = rig
    inst = add(store, ["/bin/sleep", "300"])
    rec.reconcile()
    shim = store.instance(inst.id).pid
    store.observe(inst.id, pid=None, state="new")      # as if the daemon died before recording
    Reconciler(settings, store).reconcile()            # what a restarted daemon does first
    assert store.instance(inst.id).pid == shim
    assert shims_for(settings.data, inst.id) == [shim]


def test_dead_shim_is_replaced_after_its_leftovers_stop(rig):
    settings, store, rec = rig
    inst = add(store, FORKER)
    rec.reconcile()
    shim = store.instance(inst.id).pid
    tag = leftovers.tag(settings.data, inst.id)
    [sleeper] = wait_until(lambda: _sleepers(tag), 10, "the shell's background sleep")
    os.kill(shim, signal.SIGKILL)
    wait_until(lambda: not alive(shim) and _reap_children() is None, 10, "the shim to die")
    assert alive(sleeper), "the background sleep outlives the shim"
    wait_until(lambda: rec.reconcile() is not None and store.instance(inst.id).pid not in
               (None, shim), 10, "a new shim")
    assert not alive(sleeper), "what the dead shim left was stopped first"
    new = store.instance(inst.id).pid
    assert shims_for(settings.data, inst.id) == [new]


def test_unstartable_rows_back_off_and_are_reported(rig):
    settings, store, rec = rig
    broken = add(store, [], number=0)                    # a process with no command
    garbage = add(store, ["/bin/true"], number=1)
    store.db.execute("UPDATE instances SET spec='{oops' WHERE id=?", (garbage.id,))
    good = add(store, ["/bin/sleep", "300"], number=2)
    states = []
    deadline = time.monotonic() + 20
    while store.instance(broken.id).state != "crashed" and time.monotonic() < deadline:
        rec.reconcile()
        _reap_children()
        states.append(store.instance(broken.id).state)
        time.sleep(0.05)
    assert store.instance(broken.id).state == "crashed", states
    assert "backoff" in states
    assert store.instance(garbage.id).state in ("backoff", "crashed")
    assert store.instance(good.id).state in ("starting", "running")
    assert alive(store.instance(good.id).pid)
    # Crashed after three failed starts, 1 s then 2 s apart, however many passes ran.
    assert rec.books[broken.id].spawn.failures == 3 and len(states) > 10


def test_leftovers_are_found_by_exact_tag_only(tmp_path):
    mine = leftovers.tag(tmp_path / "a", 7)
    assert mine == leftovers.tag(tmp_path / "a", 7)
    assert mine != leftovers.tag(tmp_path / "b", 7) != leftovers.tag(tmp_path / "a", 70)
    near = [subprocess.Popen(["/bin/sleep", "300"], env={**ENV, leftovers.TAG: value})
            for value in (mine, mine + "0", "x" + mine)]
    try:
        assert leftovers.find(mine) == [near[0].pid]
        assert leftovers.send(mine, signal.SIGTERM) == [near[0].pid]
        assert near[0].wait(10) == -signal.SIGTERM
        assert near[1].poll() is None and near[2].poll() is None
    finally:
        for p in near:
            p.kill()
            p.wait()


def test_up_restart_delays_grow_and_are_capped():
    delays = [restart_delay(n) for n in range(1, 14)]
    assert delays[:3] == [0.0, 0.1, 0.2] and delays == sorted(delays) and delays[-1] == 10


def test_the_runtime_daemon_waits_for_the_lock(tmp_path):
    """A second runtime on one data directory waits instead of fighting the first."""
    argv = [sys.executable, "-m", "dotcloud.cli", "--data", str(tmp_path / "data"), "runtime"]
    first = subprocess.Popen(argv, stderr=subprocess.PIPE)
    runtime_json = tmp_path / "data" / "run" / "runtime.json"
    try:
        wait_until(lambda: runtime_json.exists(), 20, "the first runtime")
        second = subprocess.Popen(argv, stderr=subprocess.PIPE)
        os.set_blocking(second.stderr.fileno(), False)
        said = []
        try:
            wait_until(lambda: said.append(second.stderr.read() or b"")
                       or b"runtime_waiting" in b"".join(said), 20, "the second runtime to wait")
            assert json.loads(runtime_json.read_text())["pid"] == first.pid
            first.kill()
            first.wait()
            wait_until(lambda: json.loads(runtime_json.read_text())["pid"] == second.pid, 20,
                       "the second runtime to take over")
        finally:
            second.terminate()
            assert second.wait(20) == 0
    finally:
        first.kill()
        first.wait()
