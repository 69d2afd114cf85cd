"""``cdx security-server outbox ...``: the operator's view of the outbox's dead letters.

- ``outbox dead-letters --config FILE [--all] [--json]``: records the audit log refused for
  good — record id, when it was recorded and refused, the log's code, the decision (an
  ``allow`` dead letter still holds the backlog window) and re-queue time with ``--all``.
  Never a subject or a payload value: the listing reads neither.
- ``outbox requeue RECORD_ID --config FILE``: put one back in the shipping queue once the
  cause is fixed; a running server ships it with its next batch (it becomes a dead letter
  again if the log still refuses it, and the history keeps both).

Both read the server's database directly (``database_url`` of ``server.toml``), so they work
whether or not the server runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from cdx import db
from cdx.cliutil import print_json, print_table, say, when
from cdx.clock import utcnow
from cdx.globalconf import to_ms
from security_server import deadletters
from security_server.config import load_config


def cmd_dead_letters(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    engine = db.create_engine(config.db_url, schema=config.database_schema)
    try:
        letters = deadletters.list_dead_letters(engine, include_requeued=args.all)
    finally:
        engine.dispose()
    if args.json:
        print_json(
            [
                {
                    "record_id": d.record_id,
                    "recorded_at": when(d.created_ms),
                    "refused_at": when(d.dead_ms),
                    "code": d.code,
                    "decision": "allow" if d.released else "deny",
                    "attempts": d.attempts,
                    "requeued_at": None if d.requeued_ms is None else when(d.requeued_ms),
                }
                for d in letters
            ]
        )
        return 0
    headers = ["record id", "recorded", "refused", "code", "decision"]
    rows: list[list[Any]] = [
        [d.record_id, when(d.created_ms), when(d.dead_ms), d.code]
        + ["allow" if d.released else "deny"]
        + ([when(d.requeued_ms)] if args.all else [])
        for d in letters
    ]
    print_table(headers + (["requeued"] if args.all else []), rows)
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    engine = db.create_engine(config.db_url, schema=config.database_schema)
    try:
        deadletters.requeue(engine, args.record_id, to_ms(utcnow()))
    finally:
        engine.dispose()
    say(f"record {args.record_id} is queued for the audit log again")
    return 0


def register(sub: Any) -> None:
    """Add ``outbox dead-letters`` and ``outbox requeue`` under ``cdx security-server``."""
    top = sub.add_parser(
        "outbox",
        help="dead letters: records the audit log refused for good",
        description="List the access records the audit log refused for good (dead letters) "
        "and put one back in the shipping queue once the cause is fixed.",
    )
    cmds = top.add_subparsers(dest="outbox_command", metavar="COMMAND")
    p = cmds.add_parser(
        "dead-letters",
        help="list dead letters (record id, times, code, decision)",
        description="List the records the audit log refused for good, oldest first. "
        "No subject or payload is shown (none is read).",
    )
    p.add_argument("--config", required=True, help="server.toml")
    p.add_argument("--all", action="store_true", help="include re-queued ones (the history)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_dead_letters)
    p = cmds.add_parser(
        "requeue",
        help="put a dead letter back in the shipping queue",
        description="Queue the record again for the audit log (after fixing the cause); "
        "a running server ships it with its next batch.",
    )
    p.add_argument("record_id", metavar="RECORD_ID")
    p.add_argument("--config", required=True, help="server.toml")
    p.set_defaults(handler=cmd_requeue)
    top.set_defaults(handler=lambda _args: (top.print_help(), 1)[1])
