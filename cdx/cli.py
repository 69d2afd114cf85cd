"""The ``cdx`` command: the composition root, the only kernel module that imports components.

Each component contributes its sub-commands through ``<component>.cli.register(subparsers)``
(the ``COMPONENTS`` table, imported statically so the type checker and the import-layer test see
every edge). This module assembles them, makes everything the process creates private (umask
0077: threat model T190), and turns every failure into one line an operator can act on: what
failed, naming the file or peer, and what to do — JSON when ``--log-json`` is given, never a
traceback (``-v`` logs it at DEBUG).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import audit.cli
import consent.cli
import consent.idp_cli
import consent.representation_cli
import consent.requests_cli
import notify.cli
import portal.cli
import registry.cli
import security_server.cli
import stack.cli
from cdx import errors, telemetry
from cdx.safetext import escape, escape_json

__all__ = ["COMPONENTS", "HINTS", "build_parser", "failure", "main"]

log = logging.getLogger(__name__)

#: Components register their commands in this order.
COMPONENTS: tuple[Callable[[Any], None], ...] = (
    registry.cli.register,
    security_server.cli.register,
    consent.cli.register,
    consent.idp_cli.register,
    consent.requests_cli.register,
    consent.representation_cli.register,
    audit.cli.register,
    notify.cli.register,
    portal.cli.register,
    stack.cli.register,
)

#: What to do, by stable error code (the nearest class up the hierarchy that has a line).
HINTS: dict[str, str] = {
    "not_found": "check the path, or --data / $CDX_DATA",
    "key_store_error": "check the passphrase file and that key files are mode 0600",
    "unavailable": "check that it is running, and the address, URL or file the command uses",
    "deadline_exceeded": "the peer is slow or unreachable: try again, or raise --timeout",
    "unauthenticated": "give the credentials the command asks for (see --help)",
    "permission_denied": "these credentials are not allowed to do this",
    "representation_denied": "see `cdx representation mine` for whom you may act now",
    "minor_needs_representative": "a minor's legal representative decides: they can act "
    "for them with --acting-for",
    "not_representation_authority": "only the subsystem global configuration designates "
    "(cdx registry anchors set --representation-authority) registers relations",
    "invalid_argument": "see --help for what the command expects",
    "verification_failed": "the data does not verify: check the anchor and the peer",
    "conf_expired": "the registry must be reachable to renew the global configuration",
    "failed_precondition": "the instance is not in a state that allows this (see the message)",
    "already_exists": "choose another name or directory",
    "internal": "run again with -v for the traceback, and report it",
}

#: Exit status of a failed command (``cdx audit verify`` exits 1 when the log does not verify).
FAILED = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdx",
        description="CDX — Citizen Data Exchange: privacy-first, verifiable data exchange "
        "between government agencies.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--log-json", action="store_true", help="write logs as JSON lines")
    telemetry.add_cli_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMPONENTS:
        register(sub)
    return parser


def _hint(exc: errors.CdxError) -> str:
    for cls in type(exc).__mro__:
        code = getattr(cls, "code", None)
        if isinstance(code, str) and code in HINTS:
            return HINTS[code]
    return HINTS["internal"]


def failure(exc: BaseException) -> errors.CdxError:
    """The ``CdxError`` an operator is shown for ``exc``: itself, or a foreign exception wrapped
    with what it says about the file or peer (never statement parameters or a traceback)."""
    if isinstance(exc, errors.CdxError):
        return exc
    import grpc
    import sqlalchemy as sa

    from cdx import db, rpc

    if isinstance(exc, sa.exc.SQLAlchemyError):
        return errors.UnavailableError(f"the database could not be used: {db.error_summary(exc)}")
    if isinstance(exc, grpc.RpcError):
        return rpc.error_from_rpc(exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return errors.FailedPreconditionError(
            f"{exc.strerror or type(exc).__name__}:{where}".rstrip(":")
        )
    return errors.InternalError(f"unexpected {type(exc).__name__}")


def _report(exc: errors.CdxError, *, json_lines: bool) -> None:
    hint = _hint(exc)
    if json_lines:
        line = json.dumps(
            {"level": "ERROR", "code": exc.code, "message": exc.message, "hint": hint},
            ensure_ascii=False,
        )
        print(escape_json(line), file=sys.stderr)
    else:
        print(escape(f"error [{exc.code}]: {exc.message} — {hint}"), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    json_lines = args.log_json or os.environ.get("CDX_LOG_JSON", "") not in ("", "0")
    telemetry.configure_logging(verbose=args.verbose, json_lines=json_lines)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 1
    previous_umask = os.umask(0o077)
    try:
        result = handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        shown = failure(exc)
        if shown is not exc:
            log.debug("command failed", exc_info=exc)  # the traceback, with -v only
        _report(shown, json_lines=json_lines)
        return FAILED
    finally:
        os.umask(previous_umask)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
