"""Who may do what: keys list/add/remove, share/unshare, and the audit log.

Users are keys grouped by name. Admins add and remove anyone's keys and see
everything; a user sees their own keys, removes only their own, and shares
only the apps they own. It never lets the last admin's keys go.
"""
from dotcloud import names
from dotcloud.errors import DotcloudError, NotFound, PermissionDenied, UsageError
from dotcloud.keys import parse_public_key

from .context import Args, Command, CommandContext
from .output import iso, table, when
from .parse import int_option

MAX_KEY_BYTES = 16 * 1024


def keys_list(ctx: CommandContext, args: Args) -> int:
    admins = {u.name for u in ctx.store.users() if u.admin}
    found = ctx.store.keys() if ctx.is_admin else ctx.store.keys(ctx.user)
    rows = [{"user": k.user, "admin": k.user in admins, "type": k.keytype,
             "fingerprint": k.fingerprint, "added": iso(k.created)} for k in found]
    if args.json:
        ctx.emit({"keys": rows})
    else:
        ctx.out(table(["USER", "ROLE", "TYPE", "FINGERPRINT", "ADDED (UTC)"],
                      [[r["user"], "admin" if r["admin"] else "user", r["type"],
                        r["fingerprint"], when(k.created)] for r, k in zip(rows, found)],
                      empty="no keys"))
    return 0


def keys_add(ctx: CommandContext, args: Args) -> int:
    ctx.require_admin("add keys")
    name = names.user(args.positional[0])
    admin = "admin" in args.flags
    ctx.audit_detail = name + (" (admin)" if admin else "")
    raw = ctx.read_stdin(MAX_KEY_BYTES)
    if len(raw) > MAX_KEY_BYTES:
        raise UsageError("that is too much for one public key; send the .pub file on stdin")
    if not raw.strip():
        raise UsageError(f"send the public key on stdin: ssh ... keys add {name} < id_ed25519.pub")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DotcloudError("a public key is plain ASCII text (the .pub file)") from None
    keytype, blob, fingerprint = parse_public_key(text)
    existing = ctx.store.key_by_fingerprint(fingerprint)
    if existing is not None and existing.user != name:
        raise DotcloudError(f"that key already belongs to '{existing.user}'")
    ctx.store.add_key(name, admin, fingerprint, keytype, blob)
    ctx.audit_detail += f" {fingerprint}"
    if args.json:
        ctx.emit({"user": name, "admin": ctx.store.user(name).admin, "type": keytype,
                  "fingerprint": fingerprint})
    else:
        ctx.say(f"added key {fingerprint} for {name}{' (admin)' if admin else ''}")
    return 0


def keys_remove(ctx: CommandContext, args: Args) -> int:
    name = names.user(args.positional[0])
    ctx.audit_detail = name
    if name != ctx.user:
        ctx.require_admin("remove another user's keys")
    target = ctx.store.user(name)
    if target is None:
        raise NotFound(f"no user named '{name}'")
    if target.admin and [u.name for u in ctx.store.users() if u.admin] == [name]:
        raise PermissionDenied(f"'{name}' is the last admin; add another admin first")
    count = ctx.store.remove_user_keys(name)
    if args.json:
        ctx.emit({"user": name, "removed_keys": count})
    else:
        ctx.say(f"removed {count} key(s) of {name}")
    return 0


def share(ctx: CommandContext, args: Args) -> int:
    app = ctx.owned_app(args.positional[0], "share it")
    user = names.user(args.positional[1])
    ctx.audit_detail = user
    if ctx.store.user(user) is None:
        raise NotFound(f"no user named '{user}'")
    if user == app.owner:
        raise UsageError(f"{user} owns {app.name} already")
    ctx.store.share(app.name, user)
    return _shares(ctx, args, app.name, f"{user} can now use {app.name}")


def unshare(ctx: CommandContext, args: Args) -> int:
    app = ctx.owned_app(args.positional[0], "unshare it")
    user = names.user(args.positional[1])
    ctx.audit_detail = user
    if user not in ctx.store.shares(app.name):
        raise NotFound(f"{app.name} is not shared with '{user}'")
    ctx.store.unshare(app.name, user)
    return _shares(ctx, args, app.name, f"{user} can no longer use {app.name}")


def _shares(ctx: CommandContext, args: Args, app: str, message: str) -> int:
    if args.json:
        ctx.emit({"name": app, "shared_with": ctx.store.shares(app)})
    else:
        ctx.say(message)
    return 0


def audit(ctx: CommandContext, args: Args) -> int:
    limit = int_option(args, "lines", 50, 1, 10000)
    if args.positional:
        app = ctx.app(args.positional[0]).name
    else:
        ctx.require_admin("read the whole audit log (give an APP to see its own)")
        app = None
    rows = [{"time": iso(r["ts"]), "user": r["user"], "app": r["app"], "action": r["action"],
             "detail": r["detail"]} for r in reversed(ctx.store.audit_log(app, limit))]
    if args.json:
        ctx.emit({"entries": rows})
    else:
        ctx.out(table(["TIME (UTC)", "USER", "APP", "ACTION", "DETAIL"],
                      [[r["time"], r["user"], r["app"], r["action"], r["detail"]] for r in rows],
                      empty="nothing recorded"))
    return 0


COMMANDS = (
    Command("keys list", keys_list, "", "SSH keys (admins: everyone's; users: their own)"),
    Command("keys add", keys_add, "NAME [--admin]",
            "admins: add a user's key, read from stdin", 1, 1, flags=("admin",)),
    Command("keys remove", keys_remove, "NAME",
            "remove every key of a user (yourself, or anyone as an admin)", 1, 1),
    Command("share", share, "APP USER", "let another user use your app", 2, 2),
    Command("unshare", unshare, "APP USER", "stop sharing your app with a user", 2, 2),
    Command("audit", audit, "[APP] [-n LINES]",
            "who ran which command and pushed when (all apps: admins only)", 0, 1,
            options=("lines",)),
)
