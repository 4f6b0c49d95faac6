"""App commands: list, create, destroy, info, url.

`destroy` is the only command here that removes anything: it stops the
app's instances through the runtime (desired state), removes its routes,
rows, repository, releases, homes and logs, and frees its name. It never
removes a path built from an unvalidated name, and never while a deploy of
the app holds its lock.
"""
import time

from dotcloud.appfiles import remove_app_files
from dotcloud import appusers, names, routes
from dotcloud.errors import DotcloudError, UsageError

from . import queries
from .context import Args, Command, CommandContext
from .deploying import app_lock
from .output import iso, short_rev, table, when

STOP_WAIT_EXTRA = 10.0


def visible_apps(ctx: CommandContext):
    if ctx.is_admin:
        return ctx.store.apps()
    return [a for a in ctx.store.apps() if ctx.store.can_access(ctx.user, a.name)]


def list_apps(ctx: CommandContext, args: Args) -> int:
    rows = []
    for app in visible_apps(ctx):
        release = ctx.store.active_release(app.name)
        rows.append({"name": app.name, "owner": app.owner,
                     "shared_with": ctx.store.shares(app.name),
                     "release": release.number if release else None,
                     "revision": release.revision if release else None,
                     "deployed": iso(release.created) if release else None,
                     "url": ctx.settings.url(app.name)})
    if args.json:
        ctx.emit({"apps": rows})
        return 0
    ctx.out(table(["NAME", "OWNER", "RELEASE", "REVISION", "URL"],
                  [[r["name"], r["owner"], f"v{r['release']}" if r["release"] else None,
                    short_rev(r["revision"]) if r["revision"] else None, r["url"]]
                   for r in rows], empty="no apps yet; create one with: create APP"))
    return 0


def create(ctx: CommandContext, args: Args) -> int:
    name = names.app(args.positional[0])
    ctx.audit_app = name
    if not ctx.store.create_app(name, ctx.user):
        if ctx.store.can_access(ctx.user, name):
            raise DotcloudError(f"an app named '{name}' already exists")
        # Taken, and by whom stays hidden: every other command answers "no
        # app ... that you can access" for this app, as for one that is not.
        raise DotcloudError(f"the name '{name}' is not available")
    # Files of an earlier app of this name (a destroy cut short) are not the new owner's.
    remove_files(ctx, name)
    appusers.of(ctx.store, ctx.settings, name)
    remote = remote_url(ctx, name)
    if args.json:
        ctx.emit({"name": name, "owner": ctx.user, "remote": remote,
                  "url": ctx.settings.url(name)})
    else:
        ctx.say(f"created app {name}; push to it with:")
        ctx.say(f"  git remote add dotcloud {remote}")
        ctx.say("  git push dotcloud main")
    return 0


def remote_url(ctx: CommandContext, app: str) -> str:
    host = ctx.settings.bind if ctx.settings.bind not in ("0.0.0.0", "::") else "HOST"
    if ":" in host:
        host = f"[{host}]"
    return f"ssh://dotcloud@{host}:{ctx.settings.ssh_port}/{app}"


def destroy(ctx: CommandContext, args: Args) -> int:
    app = ctx.owned_app(args.positional[0], "destroy it")
    if "force" not in args.flags:
        raise UsageError(f"destroy removes {app.name} with its code, releases, settings and logs "
                         f"for good; to do it, run: destroy {app.name} --force")
    with app_lock(ctx, app.name):
        instances = [i.id for i in ctx.store.instances(app.name, live_only=True)]
        ctx.store.delete_app(app.name)
        routes.publish(ctx.settings, ctx.store)
        queries.poke_runtime(ctx.settings)
        stopped = _wait_stopped(ctx, instances)
        remove_files(ctx, app.name)
    ctx.audit_detail = f"{len(instances)} instance(s)"
    if args.json:
        ctx.emit({"name": app.name, "destroyed": True, "instances_stopped": len(instances),
                  "all_stopped": stopped})
    else:
        ctx.say(f"destroyed {app.name} ({len(instances)} instance(s) stopped)")
        if not stopped:
            ctx.say("warning: some instances are still stopping; the runtime finishes the job")
    return 0


def remove_files(ctx: CommandContext, app: str) -> None:
    """The app's repository, releases, homes and logs (app is a validated name)."""
    remove_app_files(ctx.settings.data, app)


def _wait_stopped(ctx: CommandContext, ids: list[int]) -> bool:
    """Wait until the runtime reports every instance stopped, so nothing writes
    into the directories we are about to remove."""
    deadline = time.monotonic() + ctx.settings.stop_grace + STOP_WAIT_EXTRA
    while True:
        states = [ctx.store.instance(i) for i in ids]
        if all(s is None or s.state == "stopped" for s in states):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
        queries.poke_runtime(ctx.settings)


def info(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    release = ctx.store.active_release(app.name)
    services = queries.services(ctx.settings, ctx.store, app.name)
    live = [li for li in queries.live_instances(ctx.store, app) if li.role == "active"]
    service_rows = []
    for name, svc in services.items():
        mine = [li.instance for li in live if li.instance.service == name]
        service_rows.append({
            "name": name, "type": svc["type"], "http": svc["http"],
            "url": queries.service_url(ctx.settings, app.name, name) if svc["http"] else None,
            "instances": [{"number": i.number, "state": i.state, "port": i.port}
                          for i in mine]})
    doc = {"name": app.name, "owner": app.owner, "shared_with": ctx.store.shares(app.name),
           "created": iso(app.created), "remote": remote_url(ctx, app.name),
           "url": ctx.settings.url(app.name),
           "release": _release_doc(release), "services": service_rows,
           "domains": [{"domain": d, "service": s} for d, _, s in ctx.store.domains(app.name)]}
    if args.json:
        ctx.emit(doc)
        return 0
    ctx.say(f"app:       {app.name}")
    ctx.say(f"owner:     {app.owner}" + (f" (shared with {', '.join(doc['shared_with'])})"
                                         if doc["shared_with"] else ""))
    ctx.say(f"remote:    {doc['remote']}")
    ctx.say(f"url:       {doc['url']}")
    if release is None:
        ctx.say("release:   none yet (push code to deploy it)")
    else:
        ctx.say(f"release:   v{release.number}, revision {short_rev(release.revision)}, "
                f"deployed {when(release.created)} UTC by {release.user}")
    for d in doc["domains"]:
        ctx.say(f"domain:    {d['domain']} -> {d['service']}")
    if service_rows:
        ctx.say("")
        ctx.out(table(["SERVICE", "TYPE", "INSTANCES", "URL"],
                      [[s["name"], s["type"],
                        ", ".join(f"{s['name']}.{i['number']} {i['state']}"
                                  for i in s["instances"]) or "none",
                        s["url"]] for s in service_rows]))
    return 0


def _release_doc(release) -> dict | None:
    if release is None:
        return None
    return {"number": release.number, "revision": release.revision, "user": release.user,
            "created": iso(release.created), "description": release.description}


def url(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    found = queries.urls(ctx.settings, ctx.store, app.name)
    domains = {d: queries.domain_url(ctx.settings, d) for d, _, _ in ctx.store.domains(app.name)}
    if args.json:
        ctx.emit({"name": app.name, "urls": found, "domains": domains})
        return 0
    for service, address in found.items():
        ctx.say(address if len(found) == 1 and not domains else f"{service}: {address}")
    for domain, address in domains.items():
        ctx.say(f"{domain}: {address}")
    return 0


COMMANDS = (
    Command("list", list_apps, "", "apps you may see"),
    Command("create", create, "APP", "create an empty app that you own", 1, 1),
    Command("destroy", destroy, "APP --force",
            "stop and remove an app: instances, routes, code, releases, logs", 1, 1,
            flags=("force",)),
    Command("info", info, "APP", "services, instances, URLs, current release", 1, 1),
    Command("url", url, "APP", "the app's URLs", 1, 1),
)
