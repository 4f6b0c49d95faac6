"""Control groups with real processes in real cgroups (skipped where the host has none)."""
import os
import subprocess
import sys
import time

import pytest
from cgroupkit import alive, data_dir, needs_cgroups, remove_groups

from dotcloud.resources import Limits
from runtime import cgroups

PY = sys.executable
MiB = 1024 * 1024

pytestmark = needs_cgroups


@pytest.fixture
def data(tmp_path):
    d = data_dir(tmp_path)
    yield d
    remove_groups(d, "t", "other")
    cgroups.sweep(d)


def test_limits_are_written_to_the_group(data):
    group = cgroups.create(data, "t", Limits(64 * MiB, 0.5, 20))
    if group.where.version == 1:
        assert (group.dirs["memory"] / "memory.limit_in_bytes").read_text().strip() \
            == str(64 * MiB)
        assert (group.dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (group.dirs["pids"] / "pids.max").read_text().strip() == "20"
    else:
        assert (group.dirs[""] / "memory.max").read_text().strip() == str(64 * MiB)
        assert (group.dirs[""] / "pids.max").read_text().strip() == "20"
    # Under the data directory's own parent: two platforms never share a group.
    assert group.relative == f"dotcloud/{cgroups.data_id(data)}/t"


def test_memory_past_the_limit_is_oom_killed_and_counted(data):
    group = cgroups.create(data, "t", Limits(memory_bytes=48 * MiB))
    assert group.oom_kills() == 0
    proc = subprocess.run([PY, "-c", "x = bytearray(200 * 1024 * 1024); print('survived')"],
                          preexec_fn=group.preexec(), capture_output=True, text=True)
    assert proc.returncode == -9 and "survived" not in proc.stdout
    assert group.oom_kills() == 1
    assert group.out_of_memory() == "out of memory (limit 48M)"


def test_fork_bomb_is_capped_by_pids_and_killed_whole(data):
    group = cgroups.create(data, "t", Limits(processes=30))
    bomb = ("import os, time\n"
            "while True:\n"
            "    try:\n        os.fork()\n"
            "    except OSError:\n        time.sleep(0.01)\n")
    proc = subprocess.Popen([PY, "-c", bomb], preexec_fn=group.preexec())
    end = time.monotonic() + 20
    while len(group.pids()) < 30 and time.monotonic() < end:
        time.sleep(0.05)
    assert len(group.pids()) == 30   # exactly the cap, never past it
    assert group.kill_all()
    assert group.pids() == []
    proc.wait(timeout=10)


def test_kill_all_reaches_processes_that_called_setsid(data):
    group = cgroups.create(data, "t", None)
    out = subprocess.run(["/bin/sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
                         preexec_fn=group.preexec(), capture_output=True, text=True)
    pid = int(out.stdout.split()[0])
    time.sleep(0.1)
    assert alive(pid) and pid in group.pids()
    assert os.getsid(pid) != os.getsid(0)   # out of every process group we know
    assert group.kill_all()
    end = time.monotonic() + 10
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    assert not alive(pid)


def test_a_leftover_group_of_the_same_name_is_emptied_and_made_afresh(data):
    old = cgroups.create(data, "t", Limits(memory_bytes=32 * MiB))
    subprocess.run([PY, "-c", "bytearray(100 * 1024 * 1024)"], preexec_fn=old.preexec())
    sleeper = subprocess.Popen(["sleep", "300"], preexec_fn=old.preexec())
    assert old.oom_kills() == 1
    new = cgroups.create(data, "t", Limits(memory_bytes=64 * MiB))
    assert sleeper.wait(timeout=10) == -9
    assert new.pids() == [] and new.oom_kills() == 0


def test_sweep_removes_groups_of_dead_owners_only(data):
    owner = subprocess.Popen([PY, "-c", "import sys\n"
                              "from pathlib import Path\nfrom runtime import cgroups\n"
                              "g = cgroups.transient(Path(sys.argv[1]), 'run', None)\n"
                              "import subprocess\n"
                              "subprocess.Popen(['setsid', 'sleep', '300'], preexec_fn=g.preexec())\n"
                              "print(g.name, flush=True)\nsys.stdin.read()\n", str(data)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(cgroups.__file__)))
    name = owner.stdout.readline().strip()
    mine = cgroups.transient(data, "build", None)
    assert cgroups.sweep(data) == []          # both owners alive
    leftover = cgroups.existing(data, name)
    sleeper = leftover.pids()[0]
    owner.kill()                              # the owner dies; its setsid child lives on
    owner.wait()
    assert alive(sleeper)
    assert cgroups.sweep(data) == [name]
    assert not alive(sleeper) or sleeper not in leftover.pids()
    assert cgroups.existing(data, name) is None
    assert cgroups.existing(data, mine.name) is not None
    mine.remove()


def test_remove_leaves_nothing(data):
    group = cgroups.create(data, "t", Limits(processes=10))
    subprocess.Popen(["sleep", "300"], preexec_fn=group.preexec())
    assert group.remove()
    assert not any(d.exists() for d in group.dirs.values())


def test_bad_names_are_refused(data):
    with pytest.raises(cgroups.CgroupError):
        cgroups.create(data, "../escape", None)


def test_the_runtime_sweeps_groups_of_instances_that_do_not_run(tmp_path):
    from dotcloud import settings as settings_mod
    from dotcloud.state import Store
    from runtime import cgroup_sweeper
    settings = settings_mod.load(tmp_path / "d")
    store = Store(settings.paths.db)
    orphan = cgroups.create(settings.data, cgroups.instance_name(999), Limits(processes=8))
    sleeper = subprocess.Popen(["sleep", "300"], preexec_fn=orphan.preexec())
    other = cgroups.create(settings.data, "not-an-instance", None)
    try:
        assert cgroup_sweeper.sweep_once(settings, store) == ["instance-999"]
        assert sleeper.wait(timeout=10) == -9
        assert cgroups.names(settings.data) == ["not-an-instance"]
    finally:
        other.remove()
        orphan.remove()


UNIFIED = cgroups.Path("/sys/fs/cgroup/unified")


@pytest.mark.skipif(not (UNIFIED / "cgroup.procs").exists() or os.geteuid() != 0,
                    reason="needs a cgroup v2 tree (a hybrid host's /sys/fs/cgroup/unified)")
def test_v2_groups_join_kill_setsid_children_and_go(data):
    """The v2 code on a real v2 tree (here without controllers: no limits to set)."""
    where = cgroups.Hierarchies(2, (("", UNIFIED),))
    group = cgroups.create(data, "t", None, where=where)
    try:
        out = subprocess.run(["/bin/sh", "-c",
                              "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
                             preexec_fn=group.preexec(), capture_output=True, text=True)
        pid = int(out.stdout.split()[0])
        assert group.pids() == [pid]
        assert group.oom_kills() == 0
        assert group.kill_all()
        end = time.monotonic() + 10
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        assert not alive(pid)
    finally:
        assert group.remove()
    assert not (UNIFIED / group.relative).exists()


def test_run_limited_in_a_cgroup_leaves_nothing(data):
    from runtime.limits import run_limited
    lines = []
    status = run_limited(["/bin/sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & "
                          "echo $!"], cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=20,
                         memory_bytes=None, on_line=lines.append,
                         cgroup=(data, "step", Limits(processes=16)))
    assert status == 0
    assert not alive(int(lines[0]))
    with pytest.raises(OSError):
        run_limited(["/no/such/program"], cwd="/", env={}, timeout=5, memory_bytes=None,
                    on_line=lines.append, cgroup=(data, "step", None))
    with pytest.raises(MemoryError) as e:
        run_limited([PY, "-c", "b'x' * (200 * 1024 * 1024)"], cwd="/", env={}, timeout=20,
                    memory_bytes=None, on_line=lines.append,
                    cgroup=(data, "step", Limits(memory_bytes=32 * MiB)))
    assert str(e.value) == "out of memory (limit 32M)"
    assert cgroups.names(data) == []
