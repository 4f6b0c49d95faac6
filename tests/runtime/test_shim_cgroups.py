"""The shim runs an instance's processes in its cgroup: limits, OOM exits, setsid, leftovers."""
import os
import signal
import sys
import time

import pytest
from cgroupkit import alive, data_dir, needs_cgroups, remove_groups

from dotcloud.resources import Limits
from runtime import cgroups

sys.path.insert(0, os.path.dirname(__file__))
from test_shim import Instance, kill_shim, py, reap, sh, wait_until  # noqa: E402

pytestmark = needs_cgroups
MiB = 1024 * 1024


@pytest.fixture
def contained(tmp_path):
    """Make shims whose spec has a cgroup; kill them and their groups afterwards."""
    data = data_dir(tmp_path)
    made = []

    def make(processes, limits, name="i", instance_id=1):
        inst = Instance(tmp_path / name, processes,
                        cgroup=cgroups.shim_spec(data, instance_id, limits))
        inst.data = data
        inst.group_name = cgroups.instance_name(instance_id)
        made.append(inst)
        return inst
    yield make
    for inst in made:
        kill_shim(inst)
        remove_groups(inst.data, inst.group_name)


def test_processes_run_in_the_group_under_its_limits(contained, tmp_path):
    inst = contained({"web": py("import time; time.sleep(300)", tmp_path)},
                     Limits(256 * MiB, 1.5, 64)).start()
    pid = wait_until(lambda: inst.process("web")["pid"], what="a pid")
    group = cgroups.existing(inst.data, inst.group_name)
    assert pid in group.pids() and inst.pid not in group.pids()   # the shim stays outside
    status = inst.status()
    assert status["limits"] == {"memory_bytes": 256 * MiB, "cpus": 1.5, "processes": 64}
    assert status["oom_kills"] == 0 and status["cgroup"] == group.relative
    assert inst.stop() == 0
    assert cgroups.existing(inst.data, inst.group_name) is None   # removed when it stops


def test_a_process_killed_for_memory_exits_out_of_memory(contained, tmp_path):
    bomb = "import time\nx = bytearray(400 * 1024 * 1024)\ntime.sleep(300)"
    inst = contained({"web": py(bomb, tmp_path)}, Limits(memory_bytes=64 * MiB)).start()
    inst.wait_line("web", r"^\[dotcloud\] out of memory \(limit 64M\), restarting in")
    proc = wait_until(lambda: inst.process("web")["last_exit_reason"] and inst.process("web"),
                      what="the exit reported")
    assert proc["last_exit"] == -signal.SIGKILL
    assert proc["last_exit_reason"] == "out of memory (limit 64M)"
    assert inst.status()["oom_kills"] >= 1


def test_a_child_killed_for_memory_is_reported_while_its_parent_lives_on(contained, tmp_path):
    # As a gunicorn worker is: the instance's own process never exits.
    parent = ("import subprocess, sys, time\n"
              "subprocess.run([sys.executable, '-c', 'x = bytearray(400 * 1024 * 1024)'])\n"
              "time.sleep(300)")
    inst = contained({"web": py(parent, tmp_path)}, Limits(memory_bytes=64 * MiB)).start()
    inst.wait_line("web", r"^\[dotcloud\] a process of this instance was killed: "
                          r"out of memory \(limit 64M\)$")
    wait_until(lambda: inst.status()["oom_kills"] == 1, what="the kill in the status")
    assert inst.process("web")["state"] == "running" and inst.process("web")["restarts"] == 0


def test_a_plain_kill_is_not_taken_for_out_of_memory(contained, tmp_path):
    inst = contained({"web": py("import time; time.sleep(300)", tmp_path)},
                     Limits(memory_bytes=64 * MiB)).start()
    pid = wait_until(lambda: inst.process("web")["pid"], what="a pid")
    os.kill(pid, signal.SIGKILL)
    inst.wait_line("web", r"^\[dotcloud\] killed by SIGKILL, restarting in")
    assert wait_until(lambda: inst.process("web")["last_exit_reason"]) == "killed by SIGKILL"


def test_stop_kills_what_left_every_process_group(contained, tmp_path):
    script = f"setsid {sys.executable} -c 'import time; time.sleep(300)' </dev/null >/dev/null " \
             "2>&1 & echo escaped=$!; exec sleep 300"
    inst = contained({"web": sh(script, tmp_path)}, Limits(processes=32)).start()
    escaped = int(inst.wait_line("web", r"^escaped=\d+$").split("=")[1])
    # It may not have called setsid() yet when its pid is printed.
    wait_until(lambda: alive(escaped) and os.getsid(escaped) == escaped, what="its setsid")
    assert inst.stop() == 0
    wait_until(lambda: not alive(escaped), what="the setsid process killed")


def test_a_fork_bomb_is_capped_and_its_neighbour_process_runs_on(contained, tmp_path):
    bomb = ("import os, time\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        time.sleep(0.05)\n")
    inst = contained({"bomb": py(bomb, tmp_path)}, Limits(processes=40)).start()
    group = cgroups.existing(inst.data, inst.group_name)
    wait_until(lambda: len(group.pids()) >= 40, what="the bomb to reach its cap")
    time.sleep(0.5)
    assert len(group.pids()) == 40
    # The host still forks.
    assert os.system("true") == 0
    assert inst.stop() == 0
    assert cgroups.existing(inst.data, inst.group_name) is None


def test_a_new_shim_empties_the_group_a_killed_shim_left(contained, tmp_path):
    script = "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo escaped=$!; exec sleep 300"
    first = contained({"web": sh(script, tmp_path)}, Limits(processes=32), name="a").start()
    escaped = int(first.wait_line("web", r"^escaped=\d+$").split("=")[1])
    os.kill(first.pid, signal.SIGKILL)
    reap(first.pid)
    first.pid = None
    assert alive(escaped)                      # PDEATHSIG reaches only the direct child
    second = contained({"web": py("import time; time.sleep(300)", tmp_path)},
                       Limits(processes=32), name="b").start()
    wait_until(lambda: not alive(escaped), what="the leftover killed")
    assert second.stop() == 0
