"""The SSH daemon: accepts connections, authenticates keys, and runs each
exec request as a git command or a platform command (gitserver.commands).

One thread per connection and one per channel; a failure in one never
reaches another. It holds no state of its own: everything is in the store.
"""
import os
import shlex
import signal
import socket
import threading

import paramiko

from dotcloud import logs
from dotcloud.errors import DotcloudError, UsageError
from dotcloud.fsutil import write_json
from dotcloud.settings import Settings
from dotcloud.state import Store

from . import git
from .channel import ChannelIO
from .commands import CommandContext, dispatch
from .guard import LoginGuard, restrict
from .hostkey import load_or_create
from .session import SSHPolicy

log = logs.get("gitserver")
GIT_COMMANDS = {"git-receive-pack", "git-upload-pack"}
REVOKE_CHECK = 0.5   # seconds between checks that a session's key still exists


def serve(settings: Settings) -> None:
    hostkey = load_or_create(settings.paths.host_key)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.bind else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.bind, settings.ssh_port))
    sock.listen(128)
    port = sock.getsockname()[1]
    write_json(settings.paths.daemon_info("ssh"), {"bind": settings.bind, "port": port, "pid": os.getpid()})
    log.info("ssh_listening", bind=settings.bind, port=port)
    stopping = threading.Event()
    guard = LoginGuard(settings.ssh_login_grace, settings.ssh_max_unauthenticated_per_source,
                       settings.ssh_max_unauthenticated)

    def stop(signum, frame):
        stopping.set()
        sock.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping.is_set():
        try:
            conn, addr = sock.accept()
        except OSError:
            break
        if not guard.admit(addr[0]):
            log.info("ssh_connection_refused", peer=f"{addr[0]}:{addr[1]}",
                     reason="too many unauthenticated connections")
            conn.close()
            continue
        threading.Thread(target=handle_connection, args=(settings, hostkey, guard, conn, addr),
                         daemon=True).start()
    log.info("ssh_stopped")


def handle_connection(settings, hostkey, guard: LoginGuard, conn, addr) -> None:
    peer = f"{addr[0]}:{addr[1]}"
    transport = paramiko.Transport(conn)
    restrict(transport)
    store = Store(settings.paths.db)
    holding = True
    timer = guard.watch(transport.is_authenticated, lambda: _expire(transport, peer))
    try:
        transport.add_server_key(hostkey)
        policy = SSHPolicy(store, peer)
        transport.start_server(server=policy)
        while transport.is_active():
            if holding and transport.is_authenticated():
                guard.release(addr[0])
                holding = False
            elif not holding and not policy.still_allowed():
                # `keys remove` may run in another process: the store is the
                # only news of it, read twice a second.
                log.info("ssh_session_revoked", peer=peer, user=policy.user)
                break
            channel = transport.accept(timeout=0.2 if holding else REVOKE_CHECK)
            if channel is None:
                continue
            threading.Thread(target=handle_channel, args=(settings, policy, channel),
                             daemon=True).start()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        log.info("ssh_connection_failed", peer=peer, error=str(exc))
    except Exception:
        log.exception("ssh_connection_crashed", peer=peer)
    finally:
        timer.cancel()
        if holding:
            guard.release(addr[0])
        transport.close()
        store.close()


def _expire(transport: paramiko.Transport, peer: str) -> None:
    log.info("ssh_login_timeout", peer=peer)
    transport.close()


def handle_channel(settings: Settings, policy: SSHPolicy, channel: paramiko.Channel) -> None:
    store = Store(settings.paths.db)
    status = 1
    try:
        if not policy.event_for(channel.get_id()).wait(30):
            return
        kind, command = policy.requests[channel.get_id()]
        status = run_request(settings, store, policy.user, kind, command, channel)
    except Exception:
        log.exception("ssh_channel_crashed", user=policy.user)
        _stderr(channel, "dotcloud: internal error; the operator can find it in the logs\n")
    finally:
        try:
            channel.send_exit_status(status)
            channel.shutdown_write()
            channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        store.close()


def run_request(settings, store, user, kind, command: bytes, channel) -> int:
    io = ChannelIO(channel)
    if kind == "shell":
        io.stderr("dotcloud: no interactive shell here; try: ssh ... help\n")
        return 1
    try:
        argv = command_argv(command)
        if argv and argv[0] in GIT_COMMANDS:
            if len(argv) != 2:
                io.stderr(f"dotcloud: usage: {argv[0]} APP\n")
                return 2
            log.info("git_request", user=user, command=argv[0], path=argv[1])
            return git.serve(settings, store, user, argv[0], argv[1], io)
        ctx = CommandContext(settings=settings, store=store, user=user, channel=channel)
        return dispatch(ctx, argv)
    except DotcloudError as exc:
        _stderr(channel, f"dotcloud: {exc}\n")   # the client may be gone already
        return exc.exit_status


def command_argv(command: bytes) -> list[str]:
    """The words of an exec request, as a shell would split them; UsageError if it can't."""
    try:
        argv = shlex.split(command.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError("the command is not valid UTF-8") from None
    except ValueError as exc:
        raise UsageError(f"cannot parse the command: {exc}") from None
    if len(argv) >= 2 and argv[0] == "git" and f"git-{argv[1]}" in GIT_COMMANDS:
        argv = [f"git-{argv[1]}", *argv[2:]]
    return argv


def _stderr(channel, text: str) -> None:
    try:
        channel.sendall_stderr(text.encode())
    except (OSError, EOFError, paramiko.SSHException):
        pass
