"""Configuration commands: var list/set/unset, scale, domain list/add/rm/cert.

`var set`, `var unset` and `scale` change the store and deploy the change
as a new release (zero-downtime); if that deploy fails the change is undone.
Domains only change routes. Names are validated; values are stored as
given and never reach a shell.
"""
import re

from dotcloud import certificates, certupload, names, routes, tlsstore
from dotcloud.errors import DotcloudError, InvalidName, NotFound, UsageError

from . import queries
from .context import Args, Command, CommandContext
from .deploying import change_and_release
from .output import shown, table

MAX_VALUE = 64 * 1024
MAX_INSTANCES = 20
SCALE_RE = re.compile(r"([^=:]+)(?::instances)?=(\d{1,4})")


def _applied(ctx: CommandContext, app: str, deployed: bool, what: str) -> None:
    if not ctx.json:
        ctx.say(f"{what}; deployed as a new release" if deployed
                else f"{what}; it applies at the next push (nothing is deployed yet)")


# -- variables ----------------------------------------------------------

def var_list(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    variables = ctx.store.variables(app.name)
    if args.json:
        ctx.emit({"name": app.name, "variables": variables})
    else:
        ctx.out(table(["NAME", "VALUE"], [[k, v] for k, v in variables.items()],
                      empty=f"{app.name} has no variables; set some with: var set {app.name} K=V"))
    return 0


def parse_assignments(words: tuple[str, ...]) -> dict[str, str]:
    """K=V words. ssh joins its arguments with spaces, so an unquoted
    `K=hello world` arrives as two words: a word without '=' continues the
    value before it."""
    pairs: list[list[str]] = []
    for word in words:
        if "=" in word:
            key, value = word.split("=", 1)
            pairs.append([names.variable(key), value])
        elif pairs:
            pairs[-1][1] += " " + word
        else:
            raise UsageError(f"expected NAME=VALUE, not '{shown(word)}'; usage: var set APP K=V ...")
    values = dict(pairs)
    for key, value in values.items():
        if len(value) > MAX_VALUE:
            raise InvalidName(f"the value of {key} is longer than {MAX_VALUE} bytes")
    return values


def var_set(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    values = parse_assignments(args.positional[1:])
    old = ctx.store.variables(app.name)
    ctx.audit_detail = " ".join(sorted(values))
    deployed = change_and_release(
        ctx, app.name, f"var set {' '.join(sorted(values))}",
        lambda: ctx.store.set_variables(app.name, values),
        lambda: ctx.store.set_variables(app.name, {k: old[k] for k in values if k in old},
                                        [k for k in values if k not in old]))
    return _var_result(ctx, args, app.name, deployed, f"set {', '.join(sorted(values))}")


def var_unset(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    keys = [names.variable(k) for k in args.positional[1:]]
    old = ctx.store.variables(app.name)
    missing = [k for k in keys if k not in old]
    if missing:
        raise NotFound(f"{app.name} has no variable {', '.join(missing)}")
    ctx.audit_detail = " ".join(sorted(keys))
    deployed = change_and_release(
        ctx, app.name, f"var unset {' '.join(sorted(keys))}",
        lambda: ctx.store.set_variables(app.name, {}, keys),
        lambda: ctx.store.set_variables(app.name, {k: old[k] for k in keys}))
    return _var_result(ctx, args, app.name, deployed, f"unset {', '.join(sorted(keys))}")


def _var_result(ctx, args, app, deployed, what) -> int:
    if args.json:
        release = ctx.store.active_release(app)
        ctx.emit({"name": app, "variables": ctx.store.variables(app), "deployed": deployed,
                  "release": release.number if release and deployed else None})
    else:
        _applied(ctx, app, deployed, what)
    return 0


# -- scale --------------------------------------------------------------

def scale(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    wanted: dict[str, int] = {}
    for pair in args.positional[1:]:
        m = SCALE_RE.fullmatch(pair)
        if m is None:
            raise UsageError(f"expected SERVICE=N or SERVICE:instances=N, not '{pair[:40]}'")
        service, count = names.service(m.group(1)), int(m.group(2))
        if not 0 <= count <= MAX_INSTANCES:
            raise UsageError(f"{service}: instances must be between 0 and {MAX_INSTANCES}")
        wanted[service] = count
    known = queries.services(ctx.settings, ctx.store, app.name)
    unknown = [s for s in wanted if known and s not in known]
    if unknown:
        raise NotFound(f"{app.name} has no service {', '.join(unknown)} "
                       f"(services: {', '.join(known)})")
    old = ctx.store.scales(app.name)
    what = " ".join(f"{s}={n}" for s, n in sorted(wanted.items()))
    ctx.audit_detail = what
    deployed = change_and_release(
        ctx, app.name, f"scale {what}",
        lambda: ctx.store.set_scales(app.name, wanted),
        lambda: _restore_scales(ctx, app.name, old, wanted))
    if args.json:
        ctx.emit({"name": app.name, "scales": ctx.store.scales(app.name), "deployed": deployed})
    else:
        _applied(ctx, app.name, deployed, f"scaled {what}")
    return 0


def _restore_scales(ctx: CommandContext, app: str, old: dict, changed: dict) -> None:
    ctx.store.set_scales(app, {s: old[s] for s in changed if s in old})
    ctx.store.unset_scales(app, [s for s in changed if s not in old])


# -- domains ------------------------------------------------------------

def domain_list(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    rows = [{"domain": d, "service": s, "url": queries.domain_url(ctx.settings, d),
             "certificate": certificates.view(ctx.settings.data, d)}
            for d, _, s in ctx.store.domains(app.name)]
    if args.json:
        ctx.emit({"name": app.name, "domains": rows})
    else:
        ctx.out(table(["DOMAIN", "SERVICE", "URL", "CERTIFICATE"],
                      [[r["domain"], r["service"], r["url"],
                        certificates.describe(r["certificate"])] for r in rows],
                      empty=f"{app.name} has no custom domains"))
    return 0


def domain_add(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    service = names.service(args.positional[1]) if len(args.positional) == 3 else "www"
    domain = names.domain(args.positional[-1])
    platform = ctx.settings.domain.lower()
    if domain == platform or domain.endswith("." + platform):
        raise InvalidName(f"{domain} is under the platform's own domain {platform}; "
                          "apps get those names automatically")
    http = queries.http_services(ctx.store.active_release(app.name))
    if http and service not in http:
        raise NotFound(f"{app.name} has no HTTP service '{service}' (HTTP services: "
                       f"{', '.join(http)})")
    ctx.audit_detail = f"{domain} {service}"
    _refuse_under_others(ctx, app, domain)
    allow_http, hsts = "allow-http" in args.flags, "hsts" in args.flags
    if not ctx.store.add_domain(domain, app.name, service, allow_http=allow_http, hsts=hsts):
        raise DotcloudError(f"the domain {domain} is already in use")
    routes.publish(ctx.settings, ctx.store)
    certificates.requested(ctx.settings, domain)
    if args.json:
        ctx.emit({"name": app.name, "domain": domain, "service": service,
                  "url": queries.domain_url(ctx.settings, domain),
                  "allow_http": allow_http, "hsts": hsts})
    else:
        ctx.say(f"{domain} now routes to {app.name} ({service})" + (
            "; its certificate is being requested (domain list shows its state)"
            if ctx.settings.https_port else ""))
    return 0


def domain_cert(ctx: CommandContext, args: Args) -> int:
    """An uploaded certificate (a wildcard, an internal CA's) replaces the ACME one."""
    app = ctx.app(args.positional[0])
    domain = names.domain(args.positional[1])
    ctx.audit_detail = domain
    if domain not in {d for d, _, _ in ctx.store.domains(app.name)}:
        raise NotFound(f"{app.name} has no domain {domain}; add it first: "
                       f"domain add {app.name} {domain}")
    raw = ctx.read_stdin(certupload.MAX_BUNDLE)
    if len(raw) > certupload.MAX_BUNDLE:
        raise UsageError("that is too much for a certificate chain and its key")
    if not raw.strip():
        raise UsageError(f"send the PEM chain and key on stdin: ssh ... domain cert {app.name} "
                         f"{domain} < bundle.pem")
    checked = certupload.check(raw, domain)
    tlsstore.save(ctx.settings.data, domain, checked.chain_pem, checked.key_pem)
    tlsstore.set_status(ctx.settings.data, domain, "valid", source="upload", reason=None,
                        not_after=checked.not_after)
    tlsstore.notify_router(ctx.settings.data)
    until = certificates.iso(checked.not_after)
    ctx.audit_detail += f" until {until}"
    if args.json:
        ctx.emit({"name": app.name, "domain": domain,
                  "certificate": {"state": "valid", "not_after": until, "source": "upload"}})
    else:
        ctx.say(f"{domain} is served with the uploaded certificate (valid until "
                f"{until[:16].replace('T', ' ')} UTC)")
    return 0


def _refuse_under_others(ctx: CommandContext, app, domain: str) -> None:
    """A name under another owner's domain is theirs to route, not this tenant's."""
    for claimed, other, _ in ctx.store.domains():
        if domain.endswith("." + claimed) and other != app.name:
            holder = ctx.store.app(other)
            if holder is not None and holder.owner != app.owner:
                raise DotcloudError(f"the domain {domain} is under {claimed}, which another "
                                    "owner's app uses")


def domain_rm(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    domain = names.domain(args.positional[1])
    ctx.audit_detail = domain
    if not ctx.store.remove_domain(domain, app.name):
        raise NotFound(f"{app.name} has no domain {domain}")
    routes.publish(ctx.settings, ctx.store)
    certificates.forgotten(ctx.settings, domain)
    if args.json:
        ctx.emit({"name": app.name, "domain": domain, "removed": True})
    else:
        ctx.say(f"{domain} no longer routes to {app.name}")
    return 0


COMMANDS = (
    Command("var list", var_list, "APP", "the app's environment variables", 1, 1),
    Command("var set", var_set, "APP NAME=VALUE ...",
            "set variables (a new release, zero-downtime)", 2, None),
    Command("var unset", var_unset, "APP NAME ...",
            "remove variables (a new release, zero-downtime)", 2, None),
    Command("scale", scale, "APP SERVICE=N ...",
            "set instance counts (also SERVICE:instances=N; a new release)", 2, None),
    Command("domain list", domain_list, "APP", "the app's custom domains", 1, 1),
    Command("domain add", domain_add, "APP [SERVICE] NAME [--allow-http] [--hsts]",
            "route a domain to a service (default www); HTTPS: keep plain HTTP, add HSTS",
            2, 3, flags=("allow-http", "hsts")),
    Command("domain cert", domain_cert, "APP NAME",
            "serve NAME with the certificate chain and key sent on stdin (PEM)", 2, 2),
    Command("domain rm", domain_rm, "APP NAME", "stop routing a domain", 2, 2),
)
