"""`logs APP [SERVICE[.N]] [-n LINES] [-f]`: the last lines of the app's
instances interleaved by time, each prefixed [service.N]; with -f, new lines
as they come until the client hangs up.

Following polls the files and checks the channel between polls, so a client
that disconnects ends it within a poll even when no line arrives. Nothing is
left running when this returns. It never writes a log.
"""
import json
import re
import time

from dotcloud import names
from dotcloud.errors import UsageError

from .context import Args, Command, CommandContext
from .logfiles import Follower, LogLine, merge, sources, tail_file
from .parse import int_option

DEFAULT_LINES = 100
MAX_LINES = 10000
POLL = 0.1   # a stat and a read per followed file: cheap, and lines show within 0.1s
RESCAN_EVERY = 2.0
SELECTOR_RE = re.compile(r"([^.]+)(?:\.(\d{1,4}))?")


def parse_selector(text: str | None) -> tuple[str | None, int | None]:
    if text is None:
        return None, None
    m = SELECTOR_RE.fullmatch(text)
    if m is None:
        raise UsageError(f"expected SERVICE or SERVICE.N, not '{text[:40]}'")
    return names.service(m.group(1)), int(m.group(2)) if m.group(2) is not None else None


def logs(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    service, number = parse_selector(args.positional[1] if len(args.positional) > 1 else None)
    lines = int_option(args, "lines", DEFAULT_LINES, 0, MAX_LINES)
    log_dir = ctx.settings.paths.app_logs(app.name)
    follower = Follower(log_dir, service, number)
    try:
        if "follow" in args.flags:
            # The tail ends where following starts: no line shown twice or lost.
            ends = follower.start()
            found = {label: follower.files[label].path for label in ends}
        else:
            ends, found = {}, sources(log_dir, service, number)
        if not found and "follow" not in args.flags:
            what = f" for {args.positional[1]}" if service else ""
            ctx.err(f"no logs yet{what}\n")
            return 0
        batches = {label: tail_file(path, lines, ends.get(label)) for label, path in found.items()}
        _show(ctx, args, merge(batches)[-lines:] if lines else [])
        if "follow" in args.flags:
            ctx.audit_detail = "follow"
            _follow(ctx, args, follower)
    finally:
        follower.close()
    return 0


def _follow(ctx: CommandContext, args: Args, follower: Follower) -> None:
    rescanned = checked = time.monotonic()
    while not ctx.disconnected():
        _show(ctx, args, follower.read())
        now = time.monotonic()
        if now - rescanned >= RESCAN_EVERY:
            follower.rescan()
            rescanned = now
        if now - checked >= RESCAN_EVERY:
            checked = now
            if ctx.store.app(ctx.audit_app) is None:
                ctx.err("dotcloud: the app was destroyed\n")
                return
        time.sleep(POLL)


def _show(ctx: CommandContext, args: Args, lines: list[LogLine]) -> None:
    if not lines:
        return
    if args.json:
        ctx.out("".join(json.dumps(line.doc(), sort_keys=True) + "\n" for line in lines))
    else:
        ctx.out("".join(line.show() + "\n" for line in lines))


COMMANDS = (
    Command("logs", logs, "APP [SERVICE[.N]] [-n LINES] [-f]",
            "last log lines of every instance, by time; -f follows until you hang up", 1, 2,
            flags=("follow",), options=("lines",)),
)
