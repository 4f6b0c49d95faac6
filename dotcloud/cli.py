"""`dotcloud-server`: the platform's command line (SPEC section 1).

    dotcloud-server [--data DIR] up [--bind ADDR] [--ssh-port N] [--http-port N] [--https-port N]
                                    [--domain NAME] [--runtime process|docker|swarm]
    dotcloud-server [--data DIR] keys add NAME PUBKEY_FILE [--admin] | list | remove NAME
    dotcloud-server [--data DIR] nodes
    dotcloud-server [--data DIR] ssh|router|runtime|acme
"""
import argparse
import os
import sys
from pathlib import Path

from . import logs, names
from .errors import DotcloudError
from .keys import parse_public_key
from .settings import load
from .state import Store


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dotcloud-server", description="The dotcloud platform.")
    p.add_argument("--data", type=Path, help="data directory (default $DOTCLOUD_DATA or "
                   "~/.local/share/dotcloud)")
    p.add_argument("--log-json", action="store_true", default=None, help="logs as JSON lines")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def daemon_args(sp):
        sp.add_argument("--bind", help="address to listen on (default 127.0.0.1)")
        sp.add_argument("--ssh-port", type=int, help="SSH port (default 2222; 0 picks one)")
        sp.add_argument("--http-port", type=int, help="HTTP port (default 8080; 0 picks one)")
        sp.add_argument("--https-port", type=int, help="HTTPS port (default 8443; 0 turns "
                        "HTTPS off)")
        sp.add_argument("--admin-port", type=int, help="router metrics port (default: none)")
        sp.add_argument("--domain", help="apps are served at APP.DOMAIN (default localhost)")
        sp.add_argument("--runtime", choices=["process", "docker", "swarm"],
                        help="default process")

    up = sub.add_parser("up", help="run the SSH server, router and runtime")
    daemon_args(up)
    up.add_argument("--keep-apps", action="store_true",
                    help="leave apps running when up stops (default: stop them)")
    keys = sub.add_parser("keys", help="manage SSH keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="add|list|remove")
    ka = ksub.add_parser("add")
    ka.add_argument("name"); ka.add_argument("pubkey_file", type=Path)
    ka.add_argument("--admin", action="store_true")
    ksub.add_parser("list")
    kr = ksub.add_parser("remove")
    kr.add_argument("name")
    nodes = sub.add_parser("nodes", help="the swarm's nodes and the instances on each "
                           "(swarm runtime)")
    nodes.add_argument("--json", action="store_true", help="as JSON")
    for name in ("ssh", "router", "runtime", "acme"):
        sp = sub.add_parser(name, help=f"run the {name} daemon alone")
        daemon_args(sp)
        if name == "runtime":
            sp.add_argument("--stop-apps", action="store_true",
                            help="stop every instance when this daemon stops")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    _export_code_root()
    try:
        settings = load(args.data, log_json=args.log_json, **{
            k: getattr(args, k, None) for k in
            ("bind", "ssh_port", "http_port", "https_port", "admin_port", "domain",
             "runtime")})
        logs.configure(json=settings.log_json)
        return run(args, settings)
    except DotcloudError as exc:
        print(f"dotcloud-server: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


def run(args, settings) -> int:
    if args.command == "keys":
        return keys_command(args, settings)
    if args.command == "nodes":
        from runtime.swarm_nodes import print_nodes
        return print_nodes(settings, Store(settings.paths.db), as_json=args.json)
    if args.command == "up":
        if settings.runtime == "swarm":
            from runtime.swarm_nodes import prepare
            print(f"dotcloud: swarm   {prepare(settings)}", flush=True)
        from .supervisor import Supervisor
        return Supervisor(settings, keep_apps=args.keep_apps).run()
    if args.command == "ssh":
        from gitserver.server import serve
        serve(settings)
    elif args.command == "router":
        from router.main import run as run_router
        run_router(data_dir=settings.data, bind=settings.bind, port=settings.http_port,
                   admin_port=settings.admin_port or None, log_json=settings.log_json,
                   https_port=settings.https_port or None, tls_cert=settings.tls_cert,
                   tls_key=settings.tls_key, domain=settings.domain)
    elif args.command == "runtime":
        from runtime.daemon import serve
        serve(settings, stop_apps=args.stop_apps)
    elif args.command == "acme":
        from .certificates import serve as serve_acme
        serve_acme(settings)
    return 0


def keys_command(args, settings) -> int:
    store = Store(settings.paths.db)
    if args.keys_command == "add":
        name = names.user(args.name)
        try:
            text = args.pubkey_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise DotcloudError(f"cannot read {args.pubkey_file}: {exc}") from None
        keytype, blob, fp = parse_public_key(text)
        existing = store.key_by_fingerprint(fp)
        if existing and existing.user != name:
            raise DotcloudError(f"that key already belongs to '{existing.user}'")
        store.add_key(name, args.admin, fp, keytype, blob)
        store.audit("local", "keys add", detail=f"{name} {fp}")
        print(f"added key {fp} for {name}{' (admin)' if args.admin else ''}")
    elif args.keys_command == "list":
        admins = {u.name for u in store.users() if u.admin}
        for k in store.keys():
            print(f"{k.user:<20} {'admin' if k.user in admins else 'user ':<5} "
                  f"{k.keytype:<12} {k.fingerprint}")
    else:
        name = names.user(args.name)
        n = store.remove_user_keys(name)
        if not n:
            raise DotcloudError(f"no keys for '{name}'")
        store.audit("local", "keys remove", detail=name)
        print(f"removed {n} key(s) of {name}")
    return 0


def _export_code_root() -> None:
    """Our own subprocesses (`python -m hooks.pipeline`, `-m runtime.shim`) find
    this code even when it runs from a source tree rather than an install."""
    root = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


if __name__ == "__main__":
    sys.exit(main())
