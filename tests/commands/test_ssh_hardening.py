"""The SSH daemon against clients that never log in, and against weak algorithms.

A platform of its own, with a short login grace time and a small cap on
unauthenticated connections, so the limits show in seconds.
"""
import re
import shutil
import socket
import subprocess
import time

import paramiko
import pytest

from platform_helpers import Platform

GRACE = 1.5
PER_SOURCE = 3


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    (root / "data").mkdir()
    (root / "data" / "config.yml").write_text(
        f"ssh_login_grace: {GRACE}\nssh_max_unauthenticated_per_source: {PER_SOURCE}\n")
    p = Platform(data=root / "data", home=root)
    p.start()
    p.add_user("alice", admin=True)
    yield p
    p.stop()


def _silent(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _closed_after(s: socket.socket, limit: float) -> float:
    """Seconds until the server closed s (reading its banner first); fails past limit."""
    started = time.monotonic()
    s.settimeout(limit)
    while True:
        data = s.recv(4096)
        if not data:
            return time.monotonic() - started
        assert time.monotonic() - started < limit, "the server kept the connection open"


def _ssh(p: Platform, *options: str) -> subprocess.CompletedProcess:
    # Without the helper's LogLevel=ERROR, which hides why a negotiation failed.
    argv = p.ssh_command("alice").replace("-o LogLevel=ERROR", "").split()
    argv += list(options) + [
        "-p", str(p.ssh_port), "dotcloud@127.0.0.1", "list"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_a_connection_that_sends_nothing_is_closed_at_the_grace_time(guarded):
    with _silent(guarded.ssh_port) as s:
        took = _closed_after(s, GRACE + 10)
    assert took >= GRACE - 0.5


def test_a_connection_that_exchanges_keys_but_never_authenticates_is_closed(guarded):
    sock = socket.create_connection(("127.0.0.1", guarded.ssh_port), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        assert transport.is_active()
        deadline = time.monotonic() + GRACE + 10
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not transport.is_active()
        assert not transport.is_authenticated()
    finally:
        transport.close()


def test_a_logged_in_session_outlives_the_grace_time(guarded):
    r = _ssh(guarded)
    assert r.returncode == 0, r.stderr
    # One session held open past the grace time still answers.
    key = paramiko.Ed25519Key(filename=str(guarded.keys["alice"]))
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", guarded.ssh_port, username="dotcloud", pkey=key,
                   allow_agent=False, look_for_keys=False)
    try:
        time.sleep(GRACE + 1)
        _, out, _ = client.exec_command("list")
        assert out.channel.recv_exit_status() == 0
    finally:
        client.close()


def test_unauthenticated_connections_are_capped_per_source(guarded):
    held = [_silent(guarded.ssh_port) for _ in range(PER_SOURCE)]
    try:
        for s in held:      # each got its banner: the server took it
            s.settimeout(10)
            assert s.recv(64).startswith(b"SSH-2.0-")
        with _silent(guarded.ssh_port) as extra:
            extra.settimeout(10)
            assert extra.recv(64) == b"", "a connection past the cap was served"
    finally:
        for s in held:
            s.close()
    # The slots come back as soon as those connections are gone.
    deadline = time.monotonic() + 10
    while _ssh(guarded).returncode != 0:
        assert time.monotonic() < deadline, "logins stayed refused after the cap cleared"
        time.sleep(0.2)


@pytest.mark.parametrize("option, what", [
    ("Ciphers=3des-cbc", "cipher"),
    ("Ciphers=aes256-cbc", "cipher"),
    ("MACs=hmac-md5", "MAC"),
    ("MACs=hmac-sha1-96", "MAC"),
    ("KexAlgorithms=ecdh-sha2-nistp256", "key exchange"),
    ("KexAlgorithms=diffie-hellman-group14-sha256", "key exchange"),
])
def test_weak_algorithms_are_refused(guarded, option, what):
    r = _ssh(guarded, "-o", option)
    assert r.returncode == 255
    assert f"no matching {what}" in r.stderr


def test_ssh_audit_finds_no_failure(guarded):
    audit = shutil.which("ssh-audit")
    assert audit, "ssh-audit is installed by .ci/run"
    r = subprocess.run([audit, "-n", "-p", str(guarded.ssh_port), "127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    report = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
    assert "(kex) curve25519-sha256@libssh.org" in report, report
    failures = [line for line in report.splitlines() if "[fail]" in line]
    assert failures == [], "\n".join(failures)


def test_removing_a_key_ends_that_users_open_sessions(guarded, tmp_path):
    from platform_helpers import git_repo, server_cmd
    guarded.add_user("carol")
    repo = git_repo(tmp_path / "site", {"index.html": "<p>hi</p>\n"})
    pushed = guarded.push("carol", repo, "carols")
    assert pushed.code == 0, pushed.text
    follow = subprocess.Popen(
        guarded.ssh_command("carol").split() + ["-p", str(guarded.ssh_port),
                                                "dotcloud@127.0.0.1", "logs", "carols", "-f"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        assert follow.poll() is None, "logs -f ended by itself"
        removed = server_cmd(guarded.data, "keys", "remove", "carol")
        assert removed.returncode == 0, removed.stderr
        started = time.monotonic()
        follow.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        follow.kill()
        follow.wait()
    assert _ssh(guarded).returncode == 0     # other users' sessions are untouched
