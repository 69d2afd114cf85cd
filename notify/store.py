"""The notification service's tables (SQLAlchemy Core) and the queries over them; no policy.

- ``notify_preferences``: one row per citizen who chose something, keyed by the keyed tag of
  their national id; the choices (with their addresses) sealed (``notify.sealing``);
- ``notify_cursor``: the one row saying up to which audit-log index entries were examined;
  it moves in the same transaction as the messages those entries produced, so an entry is
  never skipped and never queued twice;
- ``notify_outbox``: one row per message to send, unique on its idempotency key (event x
  channel x address); the address and the rendered text sealed. States: ``pending`` (due at
  ``next_attempt_ms``, claimed by a sender until ``lease_until_ms``), ``sent``, ``dead`` (a
  dead letter: refused for good or out of attempts; an operator may requeue it).

Times are Unix milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

metadata = sa.MetaData()

PENDING, SENT, DEAD = "pending", "sent", "dead"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

preferences = sa.Table(
    "notify_preferences",
    metadata,
    sa.Column("subject_tag", sa.String(64), primary_key=True),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

cursor = sa.Table(
    "notify_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("after_index", sa.BigInteger, nullable=False),  # -1: nothing examined yet
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

outbox = sa.Table(
    "notify_outbox",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("delivery_key", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("entry_index", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
    sa.Column("lease_until_ms", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.String(64), nullable=False),
    sa.Column("event_time_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("sent_at_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("delivery_key", name="uq_notify_outbox_delivery_key"),
)
sa.Index("ix_notify_outbox_due", outbox.c.state, outbox.c.next_attempt_ms)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A queued message (``payload`` still sealed)."""

    id: int
    delivery_key: str
    channel: str
    entry_index: int
    payload: str
    state: str
    attempts: int
    next_attempt_ms: int
    last_error: str
    event_time_ms: int
    created_at_ms: int
    sent_at_ms: int | None


def outbox_row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=int(row.id),
        delivery_key=row.delivery_key,
        channel=row.channel,
        entry_index=int(row.entry_index),
        payload=row.payload,
        state=row.state,
        attempts=int(row.attempts),
        next_attempt_ms=int(row.next_attempt_ms),
        last_error=row.last_error,
        event_time_ms=int(row.event_time_ms),
        created_at_ms=int(row.created_at_ms),
        sent_at_ms=int(row.sent_at_ms) if row.sent_at_ms is not None else None,
    )


def insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table) -> Any:
    """An INSERT that skips rows whose unique key exists (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def read_cursor(conn: sa.Connection) -> int:
    value = conn.execute(sa.select(cursor.c.after_index).where(cursor.c.id == 1)).scalar_one()
    return int(value)


def counts(conn: sa.Connection) -> dict[str, int]:
    """Messages by state."""
    rows = conn.execute(sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state))
    out = {PENDING: 0, SENT: 0, DEAD: 0}
    out.update({str(state): int(n) for state, n in rows})
    return out
