"""Parsing and showing resource limits (dotcloud.resources)."""
import pytest

from dotcloud.resources import Limits, build_limits, format_memory, parse_limits, parse_memory

MiB = 1024 * 1024


@pytest.mark.parametrize("text, n", [("512M", 512 * MiB), ("1G", 1024 * MiB),
                                     ("1.5G", 1536 * MiB), ("256Mi", 256 * MiB),
                                     ("256MiB", 256 * MiB), ("64m", 64 * MiB),
                                     (str(64 * MiB), 64 * MiB), (64 * MiB, 64 * MiB)])
def test_memory_sizes(text, n):
    assert parse_memory(text) == n


@pytest.mark.parametrize("value, message", [
    ("lots", "'memory' must be a size such as 512M or 2G, not 'lots'"),
    ("1M", "'memory' must be from 4M to 1T, not 1M"),
    ("2T", "'memory' must be from 4M to 1T, not 2T"),
    (True, "'memory' must be a size such as 512M or 2G"),
    ("-5M", "'memory' must be a size such as 512M or 2G, not '-5M'")])
def test_bad_memory(value, message):
    with pytest.raises(ValueError) as e:
        parse_memory(value)
    assert str(e.value) == message


def test_format_memory_picks_the_largest_exact_unit():
    assert [format_memory(n) for n in (512 * MiB, 1024 * MiB, 1536 * MiB, 1000)] \
        == ["512M", "1G", "1536M", "1000"]


def test_parse_limits():
    assert parse_limits({"memory": "512M", "cpus": 1.5, "processes": 256}) \
        == Limits(512 * MiB, 1.5, 256)
    assert parse_limits({"cpus": 2}) == Limits(cpus=2.0)
    assert parse_limits(None) == Limits()


@pytest.mark.parametrize("raw, message", [
    ({"cpus": 0}, "'cpus' must be a number of CPUs from 0.01 to 1024, e.g. 1.5"),
    ({"cpus": "two"}, "'cpus' must be a number of CPUs from 0.01 to 1024, e.g. 1.5"),
    ({"processes": 0}, "'processes' must be an integer from 1 to 4194304"),
    ({"processes": 2.5}, "'processes' must be an integer from 1 to 4194304"),
    ({"memroy": "1G"}, "unknown limit 'memroy' (known: memory, cpus, processes)"),
    ([1], "limits must be a mapping such as {memory: 512M, cpus: 1.5, processes: 256}")])
def test_bad_limits(raw, message):
    with pytest.raises(ValueError) as e:
        parse_limits(raw)
    assert str(e.value) == message


def test_over_fills_unset_fields_from_defaults():
    mine = Limits(memory_bytes=512 * MiB)
    assert mine.over(Limits(1024 * MiB, 2.0, 100)) == Limits(512 * MiB, 2.0, 100)
    assert mine.over(None) == mine
    assert Limits.from_dict(mine.to_dict()) == mine
    assert Limits(512 * MiB, 1.5, 256).describe() == "memory 512M, cpus 1.5, processes 256"
    assert Limits().describe() == "no limits"


def test_a_build_gets_its_own_limits_and_never_less_than_its_app():
    defaults = Limits(2048 * MiB, None, 1024)
    # Unset: the default build limit, or the run limit when that is larger.
    assert build_limits(Limits(), Limits(64 * MiB, 0.5, 64), defaults) \
        == Limits(2048 * MiB, None, 1024)
    assert build_limits(Limits(), Limits(4096 * MiB, None, 4096), defaults) \
        == Limits(4096 * MiB, None, 4096)
    # Set: the service's word, smaller or larger.
    assert build_limits(Limits(96 * MiB, 1.0), Limits(64 * MiB, None, 1024), defaults) \
        == Limits(96 * MiB, 1.0, 1024)
    assert Limits(1, None, 5).at_least(Limits(2, 3.0, None)) == Limits(2, None, None)
