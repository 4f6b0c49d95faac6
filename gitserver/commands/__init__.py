"""Commands over SSH (`ssh dotcloud@host COMMAND ...`): dispatch by name.

Each command module registers functions taking (ctx, args) and returning an
exit status. Commands never reach a shell; every name is validated.
"""
from dataclasses import dataclass

import paramiko

from dotcloud.errors import UsageError
from dotcloud.settings import Settings
from dotcloud.state import Store


@dataclass
class CommandContext:
    settings: Settings
    store: Store
    user: str
    channel: paramiko.Channel

    def out(self, text: str) -> None:
        self.channel.sendall(text.encode("utf-8", "replace"))

    def err(self, text: str) -> None:
        self.channel.sendall_stderr(text.encode("utf-8", "replace"))


def dispatch(ctx: CommandContext, argv: list[str]) -> int:
    if not argv:
        raise UsageError("no command given; try: help")
    raise UsageError(f"unknown command '{argv[0][:40]}'; try: help")
