"""`python -m router --data DIR [--bind A] [--port N] [--admin-port N] [--log-json]
[--https-port N --tls-cert PEM --tls-key PEM --domain NAME]` (no --https-port: no TLS;
0: a free port)."""
import argparse
import sys
from pathlib import Path

from dotcloud.errors import DotcloudError

from .main import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router",
                                     description="The dotcloud HTTP router.")
    parser.add_argument("--data", required=True, type=Path, help="the platform data directory")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--admin-port", type=int, default=None)
    parser.add_argument("--log-json", action="store_true")
    parser.add_argument("--https-port", type=int, default=None)
    parser.add_argument("--tls-cert", default="", help="the platform's *.DOMAIN certificate")
    parser.add_argument("--tls-key", default="")
    parser.add_argument("--domain", default="localhost")
    args = parser.parse_args(argv)
    try:
        run(args.data, bind=args.bind, port=args.port, admin_port=args.admin_port,
            log_json=args.log_json, https_port=args.https_port, tls_cert=args.tls_cert,
            tls_key=args.tls_key, domain=args.domain)
    except DotcloudError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
