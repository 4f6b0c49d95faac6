"""Hostile input over SSH is refused with a clear message and has no effect."""
import socket
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from conftest import unique


@pytest.fixture
def untouched(platform, cmd):
    """Asserts afterwards that no app, repository or file appeared anywhere."""
    apps = {a["name"] for a in cmd.json("alice", "list")["apps"]}
    data = set(platform.data.iterdir())
    repos = set((platform.data / "repos").iterdir())
    outside = set(platform.data.parent.iterdir())
    tmp = set(p for p in Path("/tmp").iterdir() if p.name.startswith("x"))
    yield
    assert {a["name"] for a in cmd.json("alice", "list")["apps"]} == apps
    assert set(platform.data.iterdir()) == data
    assert set((platform.data / "repos").iterdir()) == repos
    assert set(platform.data.parent.iterdir()) == outside
    assert set(p for p in Path("/tmp").iterdir()
               if p.name.startswith("x")) == tmp


HOSTILE_APPS = ["../x", "/etc/passwd", "a;touch /tmp/x-pwned", "$(touch /tmp/x-pwned)",
                "`touch /tmp/x-pwned`", "x" * 5000, "A", "café", "a\nb", "-x", "a b", "..", "~root"]


@pytest.mark.parametrize("name", HOSTILE_APPS)
def test_hostile_app_names(cmd, untouched, name):
    for words in (["create", name], ["info", name], ["destroy", name, "--force"],
                  ["var", "set", name, "A=1"], ["logs", name], ["run", name, "www", "--", "id"]):
        r = cmd("alice", *words)
        assert r.code in (1, 2), (words, r.text)
        assert r.err.startswith("dotcloud: ") and r.err.count("\n") == 1, r.err
        assert "invalid app name" in r.err or "usage" in r.err or "unknown option" in r.err, r.err
        assert len(r.err) < 400


def test_raw_shell_syntax_in_the_command_line(platform, untouched):
    """Sent exactly as typed: the server splits words, it never runs a shell."""
    for line in ("create a;touch /tmp/x-pwned", "create $(touch /tmp/x-pwned)", "list && touch /tmp/x-pwned",
                 "list | tee /tmp/x-pwned", "list > /tmp/x-pwned", "create 'unterminated",
                 "info `id`"):
        r = platform.ssh("alice", line)
        assert r.code in (1, 2), (line, r.text)
        assert r.err.startswith("dotcloud: "), (line, r.err)


def test_hostile_service_variable_and_domain_names(cmd, app, untouched):
    for words, why in ((["logs", app, "../../../etc/passwd"], "expected SERVICE"),
                       (["run", app, "../www", "--", "id"], "invalid service name"),
                       (["scale", app, "w;w=1"], "invalid service name"),
                       (["var", "set", app, "A;B=1"], "invalid variable name"),
                       (["var", "set", app, "X" * 300 + "=1"], "invalid variable name"),
                       (["var", "set", app, "dotcloud_x=1"], "reserved"),
                       (["domain", "add", app, "../../x.com"], "invalid domain"),
                       (["domain", "add", app, "x" * 300 + ".com"], "invalid domain"),
                       (["keys", "remove", "../alice"], "invalid user name"),
                       (["share", app, "$(id)"], "invalid user name")):
        r = cmd("alice", *words)
        assert r.code != 0 and why in r.err, (words, r.err)


def ssh_argv(platform, *extra):
    return platform.ssh_command("alice").split() + ["-p", str(platform.ssh_port), *extra]


def test_non_utf8_command_line(platform, untouched):
    r = subprocess.run(ssh_argv(platform, "dotcloud@127.0.0.1", b"create caf\xe9"),
                       capture_output=True, timeout=60)
    assert r.returncode == 2 and b"not valid UTF-8" in r.stderr


def test_a_very_long_command_line(platform, untouched):
    r = platform.ssh("alice", "create " + "a" * 100000)
    assert r.code == 1 and "invalid app name 'aaaa" in r.err and len(r.err) < 300


def test_shell_request_is_refused(platform, untouched):
    r = subprocess.run(ssh_argv(platform, "-T", "dotcloud@127.0.0.1"), input=b"touch /tmp/x-pwned\n",
                       capture_output=True, timeout=60)
    assert r.returncode != 0 and b"no interactive shell here" in r.stderr


def test_subsystem_request_is_refused(platform, untouched):
    r = subprocess.run(ssh_argv(platform, "-s", "dotcloud@127.0.0.1", "sftp"), input=b"",
                       capture_output=True, timeout=60)
    assert r.returncode != 0 and b"subsystem request failed" in r.stderr


def test_local_port_forwarding_is_refused(platform):
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(1)
    target.settimeout(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    proc = subprocess.Popen(ssh_argv(platform, "-N", "-L",
                                     f"127.0.0.1:{local}:127.0.0.1:{target.getsockname()[1]}",
                                     "dotcloud@127.0.0.1"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        conn = None
        deadline = time.monotonic() + 30
        while conn is None:
            try:
                conn = socket.create_connection(("127.0.0.1", local), timeout=5)
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "ssh never listened"
                time.sleep(0.1)
        conn.settimeout(10)
        assert conn.recv(100) == b"", "the forwarded connection is closed at once"
        conn.close()
        with pytest.raises(socket.timeout):
            target.accept()
    finally:
        proc.kill()
        proc.wait()
        target.close()


def test_remote_port_forwarding_is_refused(platform):
    r = subprocess.run(ssh_argv(platform, "-N", "-o", "ExitOnForwardFailure=yes", "-R",
                                "127.0.0.1:0:127.0.0.1:9", "dotcloud@127.0.0.1"),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert r.returncode != 0 and b"forwarding failed" in r.stderr


@pytest.fixture
def client(platform):
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    c.connect("127.0.0.1", platform.ssh_port, username="dotcloud",
              key_filename=str(platform.keys["alice"]), look_for_keys=False, allow_agent=False)
    yield c
    c.close()


def test_exec_request_with_no_command(client):
    _, out, err = client.exec_command("")
    assert out.channel.recv_exit_status() == 2
    assert "no command given; try: help" in err.read().decode()


def test_nul_bytes_in_a_command(client, app):
    _, out, err = client.exec_command(f"run {app} www -- echo a\0b")
    assert out.channel.recv_exit_status() == 1
    assert "cannot contain NUL bytes" in err.read().decode()
    _, out, err = client.exec_command("create a\0b")
    assert out.channel.recv_exit_status() == 1
    assert "invalid app name 'a\\x00b'" in err.read().decode()


def test_requests_paramiko_can_send_but_ssh_cannot(client, platform, cmd):
    transport = client.get_transport()
    with pytest.raises(paramiko.ChannelException):
        transport.open_channel("direct-tcpip", ("127.0.0.1", platform.http_port), ("127.0.0.1", 1))
    with pytest.raises(paramiko.ChannelException):
        transport.open_channel("x11", src_addr=("127.0.0.1", 6000))
    chan = transport.open_session()
    with pytest.raises(paramiko.SSHException):
        chan.invoke_subsystem("sftp")
    chan = transport.open_session()
    chan.exec_command("help")
    second = unique("second")
    with pytest.raises(paramiko.SSHException):
        chan.exec_command(f"create {second}")   # one request per channel
    assert cmd("alice", "info", second).code == 1
    assert transport.global_request("tcpip-forward", wait=True) is None
    # The connection still works after all of that.
    _, out, _ = client.exec_command("help")
    assert out.channel.recv_exit_status() == 0 and b"usage:" in out.read()


def test_a_client_that_vanishes_mid_command_breaks_nothing(platform, cmd, app):
    for _ in range(3):
        proc = subprocess.Popen(ssh_argv(platform, "dotcloud@127.0.0.1", f"logs {app} -f"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.kill()
        proc.wait()
    assert cmd("alice", "status", app).code == 0
    assert cmd("alice", "create", unique("after")).code == 0
