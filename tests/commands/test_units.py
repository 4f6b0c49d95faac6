"""Unit tests of the pure parts: argument parsing, tables, log reading, the registry."""
import os

import pytest

from dotcloud.errors import UsageError
from gitserver.commands import lookup, registry
from gitserver.commands.context import Command
from gitserver.commands.logfiles import Follower, merge, sources, tail_file
from gitserver.commands.logs import parse_selector
from gitserver.commands.output import duration, shown, table
from gitserver.commands.parse import int_option, parse, split_json

LOGS = Command("logs", None, "APP [SERVICE[.N]] [-n LINES] [-f]", "", 1, 2,
               flags=("follow",), options=("lines",))
RUN = Command("run", None, "APP SERVICE -- COMMAND ...", "", 2, 2, takes_rest=True)


def test_flags_and_options_in_every_spelling():
    for words in (["app", "-n", "5", "-f"], ["-f", "app", "-n5"], ["app", "--lines=5", "--follow"],
                  ["app", "--lines", "5", "-f"]):
        args = parse(LOGS, words)
        assert args.positional == ("app",)
        assert args.flags == {"follow"}
        assert args.option("lines") == "5"


@pytest.mark.parametrize("words", [[], ["a", "b", "c"], ["app", "--force"], ["app", "-n"],
                                   ["app", "-x"], ["app", "--follow=yes"], ["app", "--", "ls"]])
def test_wrong_arguments_print_usage(words):
    with pytest.raises(UsageError) as exc:
        parse(LOGS, words)
    assert "logs APP [SERVICE[.N]] [-n LINES] [-f]" in str(exc.value)


def test_rest_after_double_dash_is_untouched():
    args = parse(RUN, ["app", "www", "--", "sh", "-c", "echo --json -n 1", "--", "-f"])
    assert args.positional == ("app", "www")
    assert args.rest == ("sh", "-c", "echo --json -n 1", "--", "-f")
    with pytest.raises(UsageError):
        parse(RUN, ["app", "www", "-f", "--", "ls"])


def test_json_flag_is_taken_only_before_double_dash():
    assert split_json(["list", "--json"]) == (["list"], True)
    assert split_json(["run", "a", "w", "--", "x", "--json"]) == (["run", "a", "w", "--", "x", "--json"], False)


def test_int_option_bounds():
    assert int_option(parse(LOGS, ["a", "-n", "7"]), "lines", 100, 0, 10) == 7
    assert int_option(parse(LOGS, ["a"]), "lines", 100, 0, 1000) == 100
    for bad in ("x", "-1", "11"):
        with pytest.raises(UsageError):
            int_option(parse(LOGS, ["a", f"--lines={bad}"]), "lines", 100, 0, 10)


def test_selector():
    assert parse_selector("www") == ("www", None)
    assert parse_selector("www.2") == ("www", 2)
    assert parse_selector(None) == (None, None)
    for bad in ("../x", "www.", "www.a", "WWW", "a.1.2"):
        with pytest.raises(Exception):
            parse_selector(bad)


def test_table_aligns_and_keeps_cells_on_one_line():
    text = table(["A", "LONGER"], [["x", "1"], ["yyyy", "two\nlines"], [None, ""]])
    lines = text.splitlines()
    assert lines[0] == "A     LONGER"
    assert lines[1] == "x     1"
    assert lines[2] == "yyyy  two\\nlines"
    assert lines[3] == "-"
    assert table(["A"], [], empty="nothing") == "nothing\n"


def test_duration_and_shown():
    assert [duration(s) for s in (0, 59, 61, 3600 * 2 + 300, 86400 * 3 + 3600 * 4)] == \
        ["0s", "59s", "1m01s", "2h05m", "3d04h"]
    assert duration(None) is None
    assert shown("a\x1b[31mb") == "a\\x1b[31mb"
    assert len(shown("x" * 500)) == 40


def test_registry_is_consistent():
    commands = registry()
    names = [c.name for c in commands]
    assert len(names) == len(set(names))
    for c in commands:
        assert c.summary and c.func is not None
        assert lookup(commands, c.name.split() + ["x"])[0] is c
    spec = ["list", "create", "destroy", "info", "status", "url", "var list", "var set",
            "var unset", "scale", "restart", "logs", "revisions", "deploy", "rollback",
            "domain list", "domain add", "domain rm", "run", "keys list", "keys add",
            "keys remove", "share", "unshare", "help"]
    assert set(spec) <= set(names)
    with pytest.raises(UsageError) as exc:
        lookup(commands, ["var"])
    assert "var set APP NAME=VALUE" in str(exc.value)


def write_log(path, records):
    with open(path, "a") as f:
        for ts, proc, text in records:
            f.write(f"2026-11-25T19:30:{ts}Z {proc}: {text}\n")


def test_tail_reaches_into_rotated_files(tmp_path):
    log = tmp_path / "www.0.log"
    write_log(f"{log}.2", [("00.000", "web", "oldest")])
    write_log(f"{log}.1", [(f"01.{i:03d}", "web", f"old {i}") for i in range(3)])
    write_log(log, [(f"02.{i:03d}", "web", f"new {i}") for i in range(2)])
    assert [l.split(": ", 1)[1] for l in tail_file(log, 4)] == ["old 1", "old 2", "new 0", "new 1"]
    assert len(tail_file(log, 100)) == 6
    assert tail_file(log, 0) == []


def test_tail_of_a_big_file_reads_only_its_end(tmp_path):
    log = tmp_path / "www.0.log"
    write_log(log, [(f"{i // 1000:02d}.{i % 1000:03d}", "web", "x" * 100 + str(i))
                    for i in range(5000)])
    lines = tail_file(log, 3)
    assert [l[-4:] for l in lines] == ["4997", "4998", "4999"]


def test_merge_interleaves_by_time(tmp_path):
    merged = merge({
        "www.0": ["2026-11-25T19:30:01.000Z web: a", "2026-11-25T19:30:03.000Z web: c"],
        "worker.0": ["2026-11-25T19:30:02.000Z jobs: b", "not a record line"],
    })
    assert [(l.instance, l.text) for l in merged] == [
        ("www.0", "a"), ("worker.0", "b"), ("worker.0", "not a record line"), ("www.0", "c")]
    assert merged[0].show() == "[www.0] 2026-11-25T19:30:01.000Z web: a"
    assert merged[1].doc() == {"time": "2026-11-25T19:30:02.000Z", "instance": "worker.0",
                               "service": "worker", "number": 0, "process": "jobs", "line": "b"}


def test_sources_only_match_instance_logs(tmp_path):
    for name in ("www.0.log", "www.1.log", "www.0.log.1", "db.0.log", "pipeline.log", "..log"):
        (tmp_path / name).write_text("")
    assert sorted(sources(tmp_path)) == ["db.0", "www.0", "www.1"]
    assert sorted(sources(tmp_path, "www")) == ["www.0", "www.1"]
    assert sorted(sources(tmp_path, "www", 1)) == ["www.1"]
    assert sources(tmp_path / "missing") == {}


def test_follower_sees_new_lines_rotation_and_new_instances(tmp_path):
    log = tmp_path / "www.0.log"
    write_log(log, [("00.000", "web", "before")])
    follower = Follower(tmp_path, None, None)
    ends = follower.start()
    assert ends == {"www.0": log.stat().st_size}
    assert follower.read() == []
    write_log(log, [("01.000", "web", "one")])
    with open(log, "a") as f:
        f.write("2026-11-25T19:30:01.500Z web: part")   # a line being written
    assert [l.text for l in follower.read()] == ["one"]
    with open(log, "a") as f:
        f.write("ial\n")
    write_log(log, [("02.000", "web", "last of old file")])
    os.rename(log, f"{log}.1")
    write_log(log, [("03.000", "web", "first of new file")])
    write_log(tmp_path / "www.1.log", [("02.500", "web", "new instance")])
    follower.rescan()
    assert [l.text for l in follower.read()] == ["partial", "last of old file", "new instance",
                                                 "first of new file"]
    follower.close()


def test_assignments_join_words_that_ssh_split():
    from gitserver.commands.config import parse_assignments
    assert parse_assignments(("A=hello", "big", "world", "B=", "C=x=y")) == \
        {"A": "hello big world", "B": "", "C": "x=y"}
    for bad in (("loose", "A=1"), ("DOTCLOUD_X=1",), ("A-B=1",), ("A=" + "x" * 70000,)):
        with pytest.raises(Exception):
            parse_assignments(bad)


def test_container_names_of_docker_instances(tmp_path):
    """Read from the typed spec: the deployer writes no docker argv to decode."""
    from types import SimpleNamespace
    from dotcloud.desired import DataService, InstanceSpec, ProcessSpec
    from dotcloud.settings import load
    from gitserver.commands.status import container_names
    from runtime import docker_engine
    spec = InstanceSpec(app="abc", service="www", number=0, generation=3, port=20000,
                        service_type="python", processes=[ProcessSpec("web", ["gunicorn"], "/"),
                                                          ProcessSpec("jobs", ["worker"], "/")],
                        env={}, home=str(tmp_path / "g3-www.0"), log="abc/www.0.log")
    docker = load(tmp_path / "data", runtime="docker")
    assert container_names(docker, SimpleNamespace(spec=spec)) == {
        p: docker_engine.container_name(docker.data, "abc", "g3-www.0", p) for p in ("web", "jobs")}
    assert container_names(load(tmp_path / "data"), SimpleNamespace(spec=spec)) == {}
    data = InstanceSpec(**{**spec.__dict__, "data_service": DataService("redis", 3)})
    assert container_names(docker, SimpleNamespace(spec=data)) == {}   # a host server
    assert container_names(docker, SimpleNamespace(spec=None)) == {}   # a broken row
