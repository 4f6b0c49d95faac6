"""Malformed git protocol input over SSH: one clear line, exit 2, never a traceback."""
import subprocess

import pytest
from conftest import unique

INPUTS = [
    b"garbage",                       # not a pkt-line length
    b"zzzzhello",
    b"0009hello0000",                 # a pkt-line that is no request
    b"",                              # stdin closed at once
    b"00",                            # cut inside a length
    b"0032" + b"0" * 40 + b" ",       # cut inside a request line
]


@pytest.fixture(scope="module")
def repo_app(platform):
    name = unique("proto")
    argv = platform.ssh_command("alice").split() + [
        "-p", str(platform.ssh_port), "dotcloud@127.0.0.1", "create", name]
    assert subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    return name


def _crashes(platform) -> int:
    return (platform.data.parent / "up.log").read_text(errors="replace").count("_crashed")


@pytest.mark.parametrize("command", ["git-receive-pack", "git-upload-pack"])
@pytest.mark.parametrize("data", INPUTS, ids=[repr(i)[:20] for i in INPUTS])
def test_malformed_git_input_gets_one_line(platform, repo_app, command, data):
    crashes = _crashes(platform)
    argv = platform.ssh_command("alice").split() + [
        "-p", str(platform.ssh_port), "dotcloud@127.0.0.1", f"{command} '{repo_app}'"]
    r = subprocess.run(argv, input=data, capture_output=True, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.startswith("dotcloud: git protocol error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert _crashes(platform) == crashes
