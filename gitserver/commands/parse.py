"""Turns a command's words into Args, checking them against its declaration.

Flags may come anywhere before `--`; `-n 50`, `-n50`, `--lines 50` and
`--lines=50` are the same. Everything after the first `--` is kept apart,
untouched, for `run`. It never interprets a value: names are validated by
the commands, values are passed on as they are.
"""
from dotcloud.errors import UsageError

from .context import Args, Command

# Spelling -> canonical name. Options in VALUED take a value.
ALIASES = {
    "--json": "json",
    "-f": "follow", "--follow": "follow",
    "-n": "lines", "--lines": "lines",
    "--force": "force",
    "--admin": "admin",
    "--allow-http": "allow-http",
    "--hsts": "hsts",
    "--timeout": "timeout",
}
VALUED = {"lines", "timeout"}


def split_json(argv: list[str]) -> tuple[list[str], bool]:
    """Remove --json from before any `--`; it is accepted by every command."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    return [a for a in head if a != "--json"] + tail, "--json" in head


def parse(command: Command, words: list[str], json: bool = False) -> Args:
    usage = UsageError(f"usage: {command.synopsis}")
    positional: list[str] = []
    flags: set[str] = set()
    options: dict[str, str] = {}
    rest = None
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            rest = tuple(words[i:])
            break
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, value = _split_option(word)
        if name is None or (name not in command.flags and name not in command.options):
            raise UsageError(f"unknown option '{word[:40]}' for {command.name}; "
                             f"usage: {command.synopsis}")
        if name in VALUED:
            if value is None:
                if i >= len(words):
                    raise usage
                value = words[i]
                i += 1
            options[name] = value
        elif value is not None:
            raise usage
        else:
            flags.add(name)
    if len(positional) < command.min_args:
        raise usage
    if command.max_args is not None and len(positional) > command.max_args:
        raise usage
    if rest is not None and not command.takes_rest:
        raise usage
    return Args(tuple(positional), frozenset(flags), tuple(sorted(options.items())), rest, json)


def _split_option(word: str) -> tuple[str | None, str | None]:
    if word.startswith("--") and "=" in word:
        spelling, value = word.split("=", 1)
        return ALIASES.get(spelling), value
    if word in ALIASES:
        return ALIASES[word], None
    # -n50
    short = ALIASES.get(word[:2])
    if short in VALUED and not word.startswith("--"):
        return short, word[2:]
    return None, None


def int_option(args: Args, name: str, default: int, low: int, high: int) -> int:
    raw = args.option(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"--{name} wants a number, not '{raw[:20]}'") from None
    if not low <= value <= high:
        raise UsageError(f"--{name} must be between {low} and {high}")
    return value
