"""The ``cdx`` command: the composition root, the only kernel module that imports components.

Each component contributes its sub-commands through ``<component>.cli.register(subparsers)``;
this module only assembles them and maps ``CdxError`` to a clear message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cdx import errors

# (module, required): components register their commands in this order.
_COMPONENTS = (
    "registry.cli",
    "security_server.cli",
    "consent.cli",
    "consent.idp_cli",
    "audit.cli",
    "portal.cli",
    "stack.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdx",
        description="CDX — Citizen Data Exchange: privacy-first, verifiable data exchange "
        "between government agencies.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--log-json", action="store_true", help="write logs as JSON lines")
    from cdx import telemetry

    telemetry.add_cli_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMPONENTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # component not installed in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from cdx import telemetry

    telemetry.configure_logging(verbose=args.verbose, json_lines=args.log_json)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 1
    try:
        result = handler(args)
    except errors.CdxError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig()
    sys.exit(main())
