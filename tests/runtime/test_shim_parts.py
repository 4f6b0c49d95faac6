"""The shim's pure parts: spec checking, line splitting, the rotating log."""
import json
import os

import pytest

from runtime.shimproc import describe_exit, seconds
from runtime.shimlog import InstanceLog, LineSplitter, timestamp
from runtime.shimspec import ShimSpec, SpecError, load, parse

GOOD = {"instance": "hello.www.0#12",
        "processes": {"web": {"argv": ["/bin/true"], "cwd": "/tmp", "env": {"PORT": "1"}}},
        "log_path": "/data/logs/hello/www.0.log", "status_path": "/data/i/12/status.json",
        "pid_path": "/data/i/12/shim.pid"}


def spec_with(**changes):
    raw = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return raw


def process_with(**changes):
    proc = dict(GOOD["processes"]["web"])
    proc.update(changes)
    return {"web": proc}


def test_parse_good_spec_with_defaults():
    spec = parse(GOOD)
    assert isinstance(spec, ShimSpec)
    assert spec.instance == "hello.www.0#12"
    (web,) = spec.processes
    assert web.name == "web" and web.argv == ("/bin/true",) and web.env == {"PORT": "1"}
    assert (spec.log_max_bytes, spec.log_keep, spec.stop_grace) == (10485760, 3, 10.0)
    assert (spec.backoff_initial, spec.backoff_max, spec.stable_after) == (1.0, 30.0, 30.0)
    assert spec.crash_loop_restarts == 3
    with pytest.raises(TypeError):
        web.env["X"] = "y"  # plain data stays plain


def test_relative_paths_become_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    spec = parse(spec_with(log_path="logs/a.log", processes=process_with(cwd="app")))
    assert spec.log_path == str(tmp_path / "logs" / "a.log")
    assert spec.processes[0].cwd == str(tmp_path / "app")


@pytest.mark.parametrize("raw, message", [
    ([], "spec must be a JSON object"),
    (spec_with(instance=None), "instance must be a non-empty string"),
    (spec_with(instance=""), "instance must be a non-empty string"),
    (spec_with(log_path=5), "log_path must be"),
    (spec_with(status_path=None), "status_path must be"),
    (spec_with(pid_path="a\0b"), "pid_path must be"),
    (spec_with(processes={}), "processes must be a non-empty object"),
    (spec_with(processes=["web"]), "processes must be a non-empty object"),
    (spec_with(processes={"bad name": GOOD["processes"]["web"]}), "process names"),
    (spec_with(processes={"web": "python"}), "processes.web must be an object"),
    (spec_with(processes=process_with(argv=[])), "processes.web.argv"),
    (spec_with(processes=process_with(argv=["python", 3])), "processes.web.argv"),
    (spec_with(processes=process_with(argv=[""])), "processes.web.argv"),
    (spec_with(processes=process_with(cwd=None)), "processes.web.cwd"),
    (spec_with(processes=process_with(env={"A": 1})), "processes.web.env"),
    (spec_with(processes=process_with(env={"A=B": "1"})), "processes.web.env"),
    (spec_with(processes=process_with(env=["A"])), "processes.web.env"),
    (spec_with(processes=process_with(exit_reason_file=3)), "processes.web.exit_reason_file"),
    (spec_with(log_max_bytes=0), "log_max_bytes must be at least 1"),
    (spec_with(log_keep=1.5), "log_keep must be an integer"),
    (spec_with(stop_grace="10"), "stop_grace must be a number"),
    (spec_with(stable_after=True), "stable_after must be a number"),
    (spec_with(backoff_initial=-1), "backoff_initial must be at least 0"),
    (spec_with(backoff_initial=5, backoff_max=1), "backoff_max must not be smaller"),
    (spec_with(crash_loop_restarts=0), "crash_loop_restarts must be at least 1"),
])
def test_parse_refuses_bad_specs(raw, message):
    with pytest.raises(SpecError, match=message):
        parse(raw)


def test_load_reports_missing_and_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load(str(tmp_path / "none.json"))
    (tmp_path / "bad.json").write_bytes(b"\xff{")
    with pytest.raises(SpecError, match="cannot read spec file"):
        load(str(tmp_path / "bad.json"))
    with pytest.raises(SpecError, match="cannot read spec file"):
        load(str(tmp_path))  # a directory
    (tmp_path / "ok.json").write_text(json.dumps(GOOD))
    assert load(str(tmp_path / "ok.json")).instance == GOOD["instance"]


def test_splitter_lines_partials_and_close():
    s = LineSplitter()
    assert s.feed(b"one\ntw") == ["one"]
    assert s.feed(b"o\n\nthree") == ["two", ""]
    assert s.close() == ["three"]
    assert s.close() == []
    assert s.feed(b"bad \xff\r\n") == ["bad \ufffd\r"]


def test_splitter_cuts_long_lines_and_pending_partials():
    s = LineSplitter(max_line=10)
    assert s.feed(b"a" * 25 + b"\n") == ["a" * 10, "a" * 10, "a" * 5]
    assert s.feed(b"b" * 10 + b"\n") == ["b" * 10]
    assert s.feed(b"c" * 23) == ["c" * 10, "c" * 10]  # no unbounded buffering
    assert s.close() == ["ccc"]


def test_splitter_keeps_utf8_characters_whole():
    s = LineSplitter(max_line=10)
    text = "aaaaaaaaa\u00e9\u20acz"  # the 2-byte character straddles byte 10
    assert s.feed(text.encode() + b"\n") == ["aaaaaaaaa", "\u00e9\u20acz"]


def test_timestamp_format():
    assert timestamp(1764099001.1234) == "2025-11-25T19:30:01.123Z"
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"


def test_log_writes_records_and_rotates(tmp_path):
    path = tmp_path / "logs" / "www.0.log"
    log = InstanceLog(str(path), max_bytes=100, keep=2)
    log.write("web", ["x" * 40], now=0)
    assert path.read_text() == "1970-01-01T00:00:00.000Z web: " + "x" * 40 + "\n"
    log.write("web", ["first"], now=0)  # passes 100 bytes: rotated
    logs = tmp_path / "logs"
    assert path.read_text() == ""  # reopened at once
    assert (logs / "www.0.log.1").read_text().endswith("web: first\n")
    log.write("web", ["y" * 90], now=0)
    assert "first" in (logs / "www.0.log.2").read_text()
    assert "y" * 90 in (logs / "www.0.log.1").read_text()
    log.write("web", ["z" * 90], now=0)
    assert "y" * 90 in (logs / "www.0.log.2").read_text()
    assert "z" * 90 in (logs / "www.0.log.1").read_text()
    assert sorted(os.listdir(logs)) == ["www.0.log", "www.0.log.1", "www.0.log.2"]  # log_keep=2
    log.write("web", ["small"], now=0)
    assert path.read_text().endswith("web: small\n")
    log.write("web", [])  # nothing to write: nothing happens
    log.close()


def test_log_rotates_within_one_big_write(tmp_path):
    path = tmp_path / "a.log"
    log = InstanceLog(str(path), max_bytes=100_000, keep=10)
    log.write("w", ["x"] * 40_000, now=0)  # 1.2 MB of records from one read
    sizes = [os.path.getsize(f"{path}.{n}") for n in range(1, 10) if os.path.exists(f"{path}.{n}")]
    assert len(sizes) >= 9
    assert all(100_000 < size <= 100_000 + 64 * 1024 + 40 for size in sizes)


def test_log_keep_zero_only_truncates(tmp_path):
    path = tmp_path / "a.log"
    log = InstanceLog(str(path), max_bytes=60, keep=0)
    log.write("web", ["long enough to pass sixty bytes"])
    assert path.read_text() == ""
    log.write("web", ["next"])
    assert path.read_text().endswith("web: next\n")
    assert os.listdir(tmp_path) == ["a.log"]


def test_second_writer_does_not_rotate_again(tmp_path):
    path = tmp_path / "a.log"
    a = InstanceLog(str(path), max_bytes=1000, keep=5)
    b = InstanceLog(str(path), max_bytes=1000, keep=5)
    a.write("a", ["x" * 600])
    b.write("b", ["y" * 600])  # over the limit: b rotates
    a.write("a", ["after"])  # a follows the path to the new file
    assert "after" in path.read_text()
    assert "y" * 600 in (tmp_path / "a.log.1").read_text()
    # Both saw the old file full; only the first to take the lock rotates.
    a.max_bytes = b.max_bytes = 10
    a.write("a", ["z"])
    b._rotate()
    assert not (tmp_path / "a.log.3").exists()
    assert "z" in (tmp_path / "a.log.1").read_text()


def test_log_write_errors_are_reported_not_raised(tmp_path):
    (tmp_path / "file").write_text("")
    errors = []
    log = InstanceLog(str(tmp_path / "file" / "a.log"), 100, 1,
                      on_error=lambda event, e: errors.append((event, e)))
    log.write("web", ["lost"])
    assert [event for event, _ in errors] == ["log_write_failed"]
    assert isinstance(errors[0][1], OSError)
    InstanceLog(str(tmp_path / "file" / "b.log"), 100, 1).write("web", ["no handler"])


def test_log_follows_a_removed_file(tmp_path):
    path = tmp_path / "a.log"
    log = InstanceLog(str(path), 10_000, 1)
    log.write("web", ["one"])
    path.unlink()
    log.write("web", ["two"])
    assert path.read_text().endswith("web: two\n")


def test_exit_descriptions_and_seconds():
    assert describe_exit(0) == "exited status=0"
    assert describe_exit(3) == "exited status=3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"
    assert [seconds(x) for x in (2, 0.05, 0.4, 1.25, 30)] == ["2.0", "0.05", "0.4", "1.25", "30.0"]
