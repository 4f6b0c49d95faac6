"""npm version ranges as engines.node writes them (buildpacks/noderanges.py)."""
import pytest

from buildpacks.noderanges import matches, parse_version


@pytest.mark.parametrize("version,text,expected", [
    ("20.11.1", ">=18", True), ("16.20.0", ">=18", False),
    ("20.11.1", "20.x", True), ("21.0.0", "20.x", False), ("20.0.0", "20.X", True),
    ("20.3.0", "^20.1", True), ("20.0.9", "^20.1", False), ("21.0.0", "^20.1", False),
    ("0.2.5", "^0.2.3", True), ("0.3.0", "^0.2.3", False), ("0.0.4", "^0.0.3", False),
    ("18.2.0", "18 || 20", True), ("20.0.0", "18 || 20", True), ("19.0.0", "18 || 20", False),
    ("20.10.5", "~20.10.0", True), ("20.11.0", "~20.10.0", False), ("20.9.0", "~20", True),
    ("20.1.0", ">= 18 < 21", True), ("21.0.0", ">=18 <21", False),
    ("20.1.0", "*", True), ("20.1.0", "", True), ("20.1.0", "x", True),
    ("19.5.0", "18 - 20", True), ("20.99.0", "18 - 20", True), ("21.0.0", "18 - 20", False),
    ("20.1.0", "v20.1.0", True), ("20.1.1", "=20.1.0", False),
    ("20.1.0", ">20", False), ("21.0.0", ">20", True), ("20.5.0", "<=20", True),
    ("21.0.0", "<=20", False), ("19.9.9", "<20", True), ("20.0.0", "<20", False),
    ("20.11.1", ">=20.11.0-rc.1", True),
])
def test_matches(version, text, expected):
    assert matches(version, text) is expected


@pytest.mark.parametrize("text", ["lts/*", "node", ">=abc", "20.1.0.4", "^"])
def test_unreadable_ranges_raise(text):
    with pytest.raises(ValueError, match="not a version range"):
        matches("20.1.0", text)


def test_parse_version():
    assert parse_version("v20.20.2\n") == (20, 20, 2)
    with pytest.raises(ValueError):
        parse_version("20.x")
