"""`help [COMMAND]`, generated from the same command declarations that
dispatch uses, so the two can never disagree. It only prints.
"""
from dotcloud.errors import UsageError

from .context import Args, Command, CommandContext
from .output import table


def overview(commands: tuple[Command, ...], port: int) -> str:
    head = (f"usage: ssh -p {port} dotcloud@HOST COMMAND [ARGS...] [--json]\n\n"
            "commands:\n")
    body = table(["", ""], [[c.synopsis, c.summary] for c in commands])
    # Drop the header row of two empty titles.
    body = "".join("  " + line + "\n" for line in body.splitlines()[1:])
    return head + body + "\n--json prints a JSON document instead of text. help COMMAND for details.\n"


def matching(commands: tuple[Command, ...], words: tuple[str, ...]) -> list[Command]:
    wanted = " ".join(words)
    return [c for c in commands if c.name == wanted or c.name.startswith(wanted + " ")]


def help_command(ctx: CommandContext, args: Args) -> int:
    commands = ctx.commands
    chosen = matching(commands, args.positional) if args.positional else list(commands)
    if not chosen:
        raise UsageError(f"no command named '{' '.join(args.positional)[:40]}'; try: help")
    if args.json:
        ctx.emit({"commands": [{"name": c.name, "usage": c.synopsis, "help": c.summary}
                               for c in chosen]})
    elif args.positional:
        for c in chosen:
            ctx.say(f"usage: {c.synopsis}")
            ctx.say(f"  {c.summary}")
    else:
        ctx.out(overview(commands, ctx.settings.ssh_port))
    return 0


COMMANDS = (
    Command("help", help_command, "[COMMAND]", "this list, or the usage of one command", 0, 2),
)
