"""`vip-smk` command line. The client verbs are added by the client module's owner;
`serve` delegates to the local server (vip_smk.server.__main__)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vip-smk", description="Run pipelines on VIP.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a local VIP server on this machine")
    from vip_smk.server.__main__ import add_serve_arguments

    add_serve_arguments(serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from vip_smk.server.__main__ import serve

        return serve(args) or 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
