"""Commands over SSH (`ssh dotcloud@host COMMAND ...`): the registry of
commands and dispatch by name.

Every command is declared once (name, usage, summary, accepted arguments)
in its group's module; dispatch and `help` both read these declarations.
Each command run leaves one audit row: who, which command, which app, and
the outcome. Commands never reach a shell; every name is validated.
"""
from dotcloud.errors import DotcloudError, UsageError
from dotcloud.logs import get as get_logger

from . import access, apps, config, deploys, help, run, status
from . import logs as logs_command
from .context import Command, CommandContext
from .output import shown
from .parse import parse, split_json

__all__ = ["CommandContext", "dispatch", "registry"]
log = get_logger("commands")


def registry() -> tuple[Command, ...]:
    return (apps.COMMANDS + status.COMMANDS + config.COMMANDS + deploys.COMMANDS
            + logs_command.COMMANDS + run.COMMANDS + access.COMMANDS + help.COMMANDS)


def lookup(commands: tuple[Command, ...], argv: list[str]) -> tuple[Command, list[str]]:
    """The command named by the first one or two words, and the words after."""
    by_name = {c.name: c for c in commands}
    if argv[0] in by_name:
        return by_name[argv[0]], argv[1:]
    if len(argv) > 1 and f"{argv[0]} {argv[1]}" in by_name:
        return by_name[f"{argv[0]} {argv[1]}"], argv[2:]
    group = [c for c in commands if c.name.startswith(argv[0] + " ")]
    if group:
        raise UsageError("usage: " + " | ".join(c.synopsis for c in group))
    raise UnknownCommand(f"unknown command '{shown(argv[0])}'; try: help")


class UnknownCommand(UsageError):
    pass


def dispatch(ctx: CommandContext, argv: list[str]) -> int:
    commands = registry()
    ctx.commands = commands
    argv, ctx.json = split_json(argv)
    try:
        if not argv:
            raise UnknownCommand("no command given; try: help")
        command, words = lookup(commands, argv)
    except UnknownCommand:
        ctx.err(help.overview(commands, ctx.settings.ssh_port))
        raise
    args = parse(command, words, ctx.json)
    outcome = "crashed"
    try:
        code = command.func(ctx, args)
        outcome = "ok" if code == 0 else f"exit {code}"
        return code
    except DotcloudError as exc:
        outcome = f"failed: {exc}"
        raise
    finally:
        detail = " ".join(part for part in (ctx.audit_detail, outcome) if part)
        ctx.store.audit(ctx.user, command.name, ctx.audit_app, detail[:1000])
        log.info("command", user=ctx.user, command=command.name, app=ctx.audit_app,
                 outcome=outcome[:200])
