"""Release commands: restart, revisions, deploy, rollback.

Each deploy goes through the pipeline under the app's deploy lock
(deploying.py), so it is zero-downtime and never runs beside a push; a
one-service restart goes through the runtime (restarts.py). `revisions`
only reads.
"""
import re

from dotcloud import names
from dotcloud.errors import NotFound, UsageError

from .context import Args, Command, CommandContext
from .deploying import change_and_release, redeploy
from .output import iso, short_rev, table, when
from .restarts import restart_service

RELEASE_RE = re.compile(r"v?(\d{1,9})")
REVISION_RE = re.compile(r"[0-9a-f]{4,40}|rsync-\d{1,20}|hg-[0-9a-f]{12}\+?")
DEPLOYABLE = ("built", "active", "retired")


def restart(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    if len(args.positional) > 1:
        service = names.service(args.positional[1])
        ctx.audit_detail = service
        labels = restart_service(ctx, app, service)
        if args.json:
            ctx.emit({"name": app.name, "service": service, "restarted": labels})
        else:
            ctx.say(f"restarted {', '.join(labels)} of {app.name}")
        return 0
    if not change_and_release(ctx, app.name, "restart", lambda: None, lambda: None):
        raise NotFound(f"{app.name} has nothing deployed yet; push code first")
    return _deployed(ctx, args, app.name, "restarted")


def _deployed(ctx: CommandContext, args: Args, app: str, verb: str) -> int:
    release = ctx.store.active_release(app)
    if args.json:
        ctx.emit({"name": app, "release": release.number, "revision": release.revision,
                  "url": ctx.settings.url(app)})
    else:
        ctx.say(f"{app} {verb}: now running release v{release.number} "
                f"(revision {short_rev(release.revision)})")
    return 0


def revisions(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    releases = ctx.store.releases(app.name)
    active = ctx.store.active_release(app.name)
    rows = [{"number": r.number, "revision": r.revision, "build": r.build, "user": r.user,
             "created": iso(r.created), "status": r.status, "description": r.description,
             "reason": r.reason, "active": bool(active and r.id == active.id)}
            for r in reversed(releases)]
    if args.json:
        ctx.emit({"name": app.name, "releases": rows})
        return 0
    ctx.out(table(["", "RELEASE", "REVISION", "TIME (UTC)", "USER", "STATUS", "DESCRIPTION"],
                  [["*" if r.id == (active.id if active else None) else "", f"v{r.number}",
                    short_rev(r.revision), when(r.created), r.user, r.status,
                    r.description + (f" ({r.reason})" if r.reason else "")]
                   for r in reversed(releases)],
                  empty=f"{app.name} has no releases yet; push code to make one"))
    return 0


def find_release(ctx: CommandContext, app: str, rev: str):
    """vN / N is a release number; otherwise a git revision (prefix), or the
    name the client gave an upload (rsync-…, hg-…)."""
    releases = ctx.store.releases(app)
    m = RELEASE_RE.fullmatch(rev)
    if m is not None and (rev.startswith("v") or len(rev) < 4):
        number = int(m.group(1))
        found = [r for r in releases if r.number == number]
        if not found:
            raise NotFound(f"{app} has no release v{number}")
        return found[0]
    if not REVISION_RE.fullmatch(rev):
        raise UsageError(f"expected a release (v3) or a revision (3f2a9c1), not '{rev[:40]}'")
    found = [r for r in releases if r.status in DEPLOYABLE
             and (r.revision.startswith(rev) or r.description == f"push of {rev}")]
    if not found:
        raise NotFound(f"{app} has no deployable release of revision {rev}")
    return found[-1]


def deploy(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    release = find_release(ctx, app.name, args.positional[1])
    if release.status not in DEPLOYABLE:
        raise UsageError(f"release v{release.number} is {release.status}; it cannot be deployed")
    ctx.audit_detail = f"v{release.number}"
    redeploy(ctx, app.name, release.number)
    return _deployed(ctx, args, app.name, f"deployed from v{release.number}")


def rollback(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    active = ctx.store.active_release(app.name)
    if active is None:
        raise NotFound(f"{app.name} has nothing deployed yet; there is nothing to roll back")
    earlier = [r for r in ctx.store.releases(app.name)
               if r.number < active.number and r.status == "retired"]
    if not earlier:
        raise NotFound(f"{app.name} has no earlier release to roll back to")
    target = earlier[-1]
    ctx.audit_detail = f"v{active.number} -> v{target.number}"
    redeploy(ctx, app.name, target.number)
    return _deployed(ctx, args, app.name, f"rolled back to v{target.number}")


COMMANDS = (
    Command("restart", restart, "APP [SERVICE]",
            "restart the app as a new generation (zero-downtime), or one service's "
            "instances in place, one at a time", 1, 2),
    Command("revisions", revisions, "APP", "every release: revision, time, who, status", 1, 1),
    Command("deploy", deploy, "APP REV",
            "deploy an earlier release (v3) or revision again, without building", 2, 2),
    Command("rollback", rollback, "APP", "deploy the release before the current one", 1, 1),
)
