"""What every SSH command gets: the caller's context, its parsed arguments,
and the declaration of a command (name, usage, summary, accepted flags).

The context is the only way commands reach the user (`out`, `err`,
`progress`, `emit`) and the only place app permissions are checked
(`app`, `owned_app`, `require_admin`). It never runs a subprocess and never
builds a path from a name that has not been validated.
"""
import json
from dataclasses import dataclass, field
from typing import Callable

import paramiko

from dotcloud import names
from dotcloud.errors import NotFound, PermissionDenied
from dotcloud.models import App
from dotcloud.settings import Settings
from dotcloud.state import Store

SEND_ERRORS = (OSError, EOFError, paramiko.SSHException)


@dataclass(frozen=True)
class Args:
    positional: tuple[str, ...]
    flags: frozenset[str] = frozenset()
    options: tuple[tuple[str, str], ...] = ()
    rest: tuple[str, ...] | None = None      # what came after "--"
    json: bool = False

    def option(self, name: str, default: str | None = None) -> str | None:
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class Command:
    name: str                    # "list", "var set", ...
    func: Callable               # (CommandContext, Args) -> exit status
    usage: str                   # the arguments, as help shows them
    summary: str
    min_args: int = 0
    max_args: int | None = 0     # None: any number
    flags: tuple[str, ...] = ()  # canonical names: force, follow, admin
    options: tuple[str, ...] = ()  # canonical names taking a value: lines
    takes_rest: bool = False     # accepts "-- COMMAND ..."

    @property
    def synopsis(self) -> str:
        return f"{self.name} {self.usage}".strip()


@dataclass
class CommandContext:
    settings: Settings
    store: Store
    user: str
    channel: paramiko.Channel
    json: bool = False
    commands: tuple = ()
    # What the audit row of this command says, filled in as the command runs.
    audit_app: str | None = None
    audit_detail: str = ""
    gone: bool = field(default=False)

    # -- talking to the user --------------------------------------------

    def out(self, text: str) -> None:
        self._send(self.channel.sendall, text)

    def err(self, text: str) -> None:
        self._send(self.channel.sendall_stderr, text)

    def say(self, line: str = "") -> None:
        self.out(line + "\n")

    def emit(self, value) -> None:
        """The one JSON document a command prints with --json."""
        self.out(json.dumps(value, indent=2, sort_keys=True) + "\n")

    def progress(self, line: str) -> None:
        """Deploy progress: stdout for a person, stderr when stdout is JSON."""
        (self.err if self.json else self.out)(line + "\n")

    def _send(self, send, text: str) -> None:
        if self.gone:
            return
        try:
            send(text.encode("utf-8", "replace"))
        except SEND_ERRORS:
            # The client hung up; whoever loops checks disconnected().
            self.gone = True

    def disconnected(self) -> bool:
        transport = self.channel.get_transport()
        return (self.gone or self.channel.closed or transport is None
                or not transport.is_active())

    def read_stdin(self, limit: int, timeout: float = 30.0) -> bytes:
        """Everything the client sends on stdin, up to limit bytes."""
        self.channel.settimeout(timeout)
        data = b""
        try:
            while len(data) <= limit:
                chunk = self.channel.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
        finally:
            self.channel.settimeout(None)
        return data

    # -- permissions ----------------------------------------------------

    @property
    def is_admin(self) -> bool:
        user = self.store.user(self.user)
        return bool(user and user.admin)

    def require_admin(self, what: str) -> None:
        if not self.is_admin:
            raise PermissionDenied(f"only an admin can {what}")

    def app(self, name: str) -> App:
        """The app `name` if this user may touch it; the same error whether
        it does not exist or belongs to someone else."""
        name = names.app(name)
        self.audit_app = name
        found = self.store.app(name)
        if found is None or not self.store.can_access(self.user, name):
            raise NotFound(f"no app named '{name}' that you can access")
        return found

    def owned_app(self, name: str, what: str) -> App:
        app = self.app(name)
        if app.owner != self.user and not self.is_admin:
            raise PermissionDenied(f"only the owner of '{app.name}' ({app.owner}) or an admin "
                                   f"can {what}")
        return app
