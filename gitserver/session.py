"""The SSH policy: public-key auth against the keys store, one exec request
per channel, and nothing else (no passwords, shells, subsystems, forwarding).
"""
import threading

import paramiko

from dotcloud import logs
from dotcloud.keys import fingerprint
from dotcloud.state import Store

log = logs.get("gitserver")


class SSHPolicy(paramiko.ServerInterface):
    def __init__(self, store: Store, peer: str):
        self.store = store
        self.peer = peer
        self.user: str | None = None
        self.fingerprint: str | None = None
        self.requests: dict[int, tuple[str, bytes]] = {}
        self.ready: dict[int, threading.Event] = {}

    def still_allowed(self) -> bool:
        """False once the key this session logged in with was removed (or moved)."""
        if self.fingerprint is None:
            return True
        found = self.store.key_by_fingerprint(self.fingerprint)
        return found is not None and found.user == self.user

    def event_for(self, chanid: int) -> threading.Event:
        return self.ready.setdefault(chanid, threading.Event())

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_none(self, username):
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username, password):
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        fp = fingerprint(key.asbytes())
        found = self.store.key_by_fingerprint(fp)
        if found is None:
            log.info("ssh_auth_refused", peer=self.peer, fingerprint=fp)
            return paramiko.AUTH_FAILED
        self.user = found.user
        self.fingerprint = fp
        log.info("ssh_auth_ok", peer=self.peer, user=found.user)
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        log.info("ssh_channel_refused", peer=self.peer, kind=kind)
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        if channel.get_id() in self.requests:
            return False
        self.requests[channel.get_id()] = ("exec", bytes(command))
        self.event_for(channel.get_id()).set()
        return True

    def check_channel_shell_request(self, channel):
        # Accepted only to answer with a clear message instead of a bare failure.
        if channel.get_id() in self.requests:
            return False
        self.requests[channel.get_id()] = ("shell", b"")
        self.event_for(channel.get_id()).set()
        return True

    def check_channel_pty_request(self, *args):
        return False

    def check_channel_subsystem_request(self, channel, name):
        log.info("ssh_subsystem_refused", peer=self.peer, name=name)
        return False

    def check_channel_env_request(self, channel, name, value):
        return False

    def check_channel_x11_request(self, *args):
        return False

    def check_channel_forward_agent_request(self, channel):
        return False

    def check_port_forward_request(self, address, port):
        log.info("ssh_forward_refused", peer=self.peer, address=address, port=port)
        return False

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        log.info("ssh_forward_refused", peer=self.peer, destination=str(destination))
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_global_request(self, kind, msg):
        return False
