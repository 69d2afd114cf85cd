"""The outbox's dead letters: records the audit log refused for good, out of the shipping queue.

When the log refuses a record with a permanent code (``security_server.refusals``), the outbox
adds a row to ``ss_dead_letters`` naming the record, the code and the time. The record itself
stays where it is (``ss_outbox``: signed, its opening encrypted), so nothing is copied or
deleted; the row only takes it out of the queue, so one record the log will never take cannot
hold back the others or, through the backlog window, stop the server's data release.

Dead letters are an operator's alarm (``/healthz`` degraded with ``dead_letters``, the
``cdx_outbox_depth{queue="dead_letter"}`` gauge, a log line naming the record and the code).
``cdx security-server outbox dead-letters`` lists them (record id, time, code, decision: no
personal data) and ``... requeue RECORD_ID`` puts one back in the queue once the cause is
fixed; the row stays, with its re-queue time, as history.

A dead letter of *released data* (an ALLOW record) still counts against the backlog window:
the log must hold every release, so if such records cannot be logged the server fails closed,
as it does when the log is unreachable (docs/adr/0010-dead-letters.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cdx import errors
from security_server.store import dead_letters as table
from security_server.store import outbox as outbox_table

__all__ = ["DeadLetter", "count", "list_dead_letters", "not_dead", "requeue"]

#: Longest record id accepted from an operator (UUIDs are 36 characters).
MAX_RECORD_ID_CHARS = 36


@dataclass(frozen=True)
class DeadLetter:
    """One refusal of a record for good; ``requeued_ms`` once an operator re-queued it."""

    record_id: str
    created_ms: int | None  # None once a shipped record was pruned (its history row stays)
    dead_ms: int
    code: str
    released: bool
    attempts: int
    requeued_ms: int | None


def _active() -> sa.ColumnElement[bool]:
    return table.c.requeued_ms.is_(None)


def not_dead() -> sa.ColumnElement[bool]:
    """SQL condition on ``ss_outbox`` rows: the record is not an (active) dead letter."""
    return ~sa.exists().where(table.c.record_id == outbox_table.c.record_id, _active())


def held_released() -> sa.ColumnElement[bool]:
    """SQL condition on ``ss_outbox`` rows: an active dead letter of released data (it still
    counts against the backlog window)."""
    return sa.exists().where(
        table.c.record_id == outbox_table.c.record_id, _active(), table.c.released.is_(True)
    )


def list_dead_letters(
    engine: Engine, *, include_requeued: bool = False, limit: int = 1000
) -> list[DeadLetter]:
    """Dead letters, oldest first (only active ones unless ``include_requeued``).

    Raises:
        UnavailableError: the database cannot be read (or predates dead letters).
    """
    stmt = (
        sa.select(
            table.c.record_id,
            outbox_table.c.created_ms,
            table.c.dead_ms,
            table.c.code,
            table.c.released,
            outbox_table.c.attempts,
            table.c.requeued_ms,
        )
        .outerjoin(outbox_table, outbox_table.c.record_id == table.c.record_id)
        .order_by(table.c.id)
        .limit(limit)
    )
    if not include_requeued:
        stmt = stmt.where(_active())
    rows = _read(engine, lambda conn: conn.execute(stmt).all())
    return [
        DeadLetter(
            record_id=r.record_id,
            created_ms=None if r.created_ms is None else int(r.created_ms),
            dead_ms=int(r.dead_ms),
            code=r.code,
            released=bool(r.released),
            attempts=int(r.attempts or 0),
            requeued_ms=None if r.requeued_ms is None else int(r.requeued_ms),
        )
        for r in rows
    ]


def count(engine: Engine) -> int:
    """Active dead letters.

    Raises:
        UnavailableError: the database cannot be read (or predates dead letters).
    """
    stmt = sa.select(sa.func.count()).select_from(table).where(_active())
    return int(_read(engine, lambda conn: conn.execute(stmt).scalar_one()))


def requeue(engine: Engine, record_id: str, now_ms: int) -> None:
    """Put the dead letter of ``record_id`` back in the shipping queue (its row stays, with
    ``requeued_ms``). A running server ships it with its next batch.

    Raises:
        InvalidArgumentError: ``record_id`` is not a record id.
        NotFoundError: no active dead letter has that record id.
        UnavailableError: the database cannot be written.
    """
    if not record_id or len(record_id) > MAX_RECORD_ID_CHARS or not record_id.isascii():
        raise errors.InvalidArgumentError("not a record id")
    stmt = (
        sa.update(table).where(table.c.record_id == record_id, _active()).values(requeued_ms=now_ms)
    )
    try:
        with engine.begin() as conn:
            changed = conn.execute(stmt).rowcount
    except sa.exc.SQLAlchemyError as exc:
        raise errors.UnavailableError("the server database cannot be written") from exc
    if not changed:
        raise errors.NotFoundError("no dead letter has this record id")


def _read(engine: Engine, fn: Any) -> Any:
    try:
        with engine.connect() as conn:
            return fn(conn)
    except sa.exc.SQLAlchemyError as exc:
        raise errors.UnavailableError(
            "the server database cannot be read (start the server once to migrate it)"
        ) from exc


# --- the group-commit handler (runs on the outbox's writer thread) ----------------------------


def move_rows(conn: sa.Connection, batches: Sequence[list[dict[str, Any]]]) -> list[None]:
    """Record dead letters (``rid``, ``at``, ``code``, ``released``), skipping a record that
    already is one (two replicas may ship the same batch)."""
    rows = [row for batch in batches for row in batch]
    ids = [row["rid"] for row in rows]
    present = set(
        conn.execute(sa.select(table.c.record_id).where(table.c.record_id.in_(ids), _active()))
        .scalars()
        .all()
    )
    fresh = []
    for r in rows:
        if r["rid"] not in present:
            present.add(r["rid"])
            fresh.append(
                {"record_id": r["rid"], "dead_ms": r["at"], "code": r["code"],
                 "released": r["released"]}
            )  # fmt: skip
    if fresh:
        conn.execute(sa.insert(table), fresh)
    if rows:
        conn.execute(
            sa.update(outbox_table)
            .where(outbox_table.c.record_id == sa.bindparam("rid"))
            .values(attempts=outbox_table.c.attempts + 1, last_error=sa.bindparam("code")),
            [{"rid": r["rid"], "code": r["code"]} for r in rows],
        )
    return [None] * len(batches)
