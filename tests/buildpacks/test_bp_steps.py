"""Build steps: live output, the cap and the tail, failures and deadlines as one line."""
import os
import time

import pytest

from buildpacks import steps
from buildpacks.steps import StepOutput, check_step, describe_status
from dotcloud.errors import BuildError, DeployError
from runtime.executor import HOST


def sh(script):
    return ("/bin/sh", "-c", script)


def run(script, log, timeout=30, **kw):
    check_step("step", sh(script), cwd="/", env={"PATH": os.environ["PATH"]}, timeout=timeout,
               log=log, executor=HOST, **kw)


def test_output_arrives_live_before_the_step_ends():
    seen = []

    def log(line):
        seen.append((line, time.monotonic()))
    started = time.monotonic()
    run("echo first; sleep 0.6; echo second", log)
    assert [line for line, _ in seen] == ["first", "second"]
    # "first" was logged while the step was still sleeping, not at its end.
    assert seen[0][1] - started < seen[1][1] - started
    assert seen[1][1] - seen[0][1] >= 0.3


def test_stderr_is_merged_and_last_partial_line_kept():
    lines = []
    run("echo out; echo err >&2; printf tail", lines.append)
    assert lines == ["out", "err", "tail"]


def test_failure_names_the_step_and_exit_status():
    lines = []
    with pytest.raises(BuildError) as info:
        run("echo doing; echo broken >&2; exit 3", lines.append)
    assert str(info.value) == "step failed (exit 3)"
    assert lines == ["doing", "broken"]


def test_failure_error_class_is_chosen_by_the_caller():
    with pytest.raises(DeployError, match=r"^step failed \(exit 1\)$"):
        run("exit 1", lambda line: None, error=DeployError)


def test_killed_step_says_by_which_signal():
    with pytest.raises(BuildError, match=r"^step failed \(killed by SIGKILL\)$"):
        run("kill -9 $$", lambda line: None)
    assert describe_status(-9) == "killed by SIGKILL"
    assert describe_status(2) == "exit 2"


def test_deadline_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "survivor"
    lines = []
    started = time.monotonic()
    with pytest.raises(BuildError) as info:
        run(f"echo started; (sleep 1; touch {marker}) & sleep 60", lines.append, timeout=0.5)
    assert str(info.value) == "step timed out after 0.5s"
    assert time.monotonic() - started < 30
    assert lines == ["started"]
    time.sleep(1.5)
    assert not marker.exists(), "a child of the timed-out step kept running"


def test_leftover_background_processes_are_killed(tmp_path):
    marker = tmp_path / "survivor"
    run(f"(sleep 1; touch {marker}) > /dev/null 2>&1 &", lambda line: None)
    time.sleep(1.5)
    assert not marker.exists()


def test_missing_program_is_a_one_line_error():
    with pytest.raises(BuildError, match=r"^step could not start: No such file or directory"):
        check_step("step", ("/nonexistent/program",), cwd="/", env={}, timeout=5,
                   log=lambda line: None, executor=HOST)


def test_output_past_the_cap_is_counted_and_the_tail_always_shown(monkeypatch):
    monkeypatch.setattr(steps, "SHOWN_LINES", 10)
    lines = []
    with pytest.raises(BuildError):
        run("i=1; while [ $i -le 100 ]; do echo line$i; i=$((i+1)); done; exit 1", lines.append)
    assert lines[:10] == [f"line{i}" for i in range(1, 11)]
    assert lines[10] == "... (70 lines not shown)"
    assert lines[11:] == [f"line{i}" for i in range(81, 101)]


def test_tail_repeats_nothing_already_shown():
    out = []
    output = StepOutput(out.append)
    for i in range(5):
        output(f"l{i}")
    output.show_tail()
    assert out == ["l0", "l1", "l2", "l3", "l4"]


def test_unknown_signal_numbers_are_described_too():
    assert describe_status(-999) == "killed by signal 999"
