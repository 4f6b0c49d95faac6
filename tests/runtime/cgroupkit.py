"""What the tests of real cgroups share (tests/runtime/test_cgroups.py,
test_shim_cgroups.py): their skip where the host has none, a data directory
whose groups are removed afterwards, and whether a process still runs."""
from pathlib import Path

import pytest

from runtime import cgroups

needs_cgroups = pytest.mark.skipif(cgroups.hierarchies() is None,
                                   reason="needs root and mounted cgroups")


def alive(pid: int) -> bool:
    """True while pid runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def data_dir(tmp_path: Path) -> Path:
    """A data directory: the groups of a test are named under it (cgroups.parent_path)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return data


def remove_groups(data: Path, *names: str) -> None:
    """Kill and remove the groups of data named `names` that exist (a failed test's leftovers)."""
    for name in names:
        group = cgroups.existing(data, name)
        if group is not None:
            group.remove()
