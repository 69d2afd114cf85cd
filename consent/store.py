"""The consent service's tables (SQLAlchemy Core) and the queries over them; no domain rules.

Times are Unix milliseconds (``BIGINT``). The subject is looked up by ``subject_tag`` (a keyed
HMAC of the national id), never by the id itself; the id appears only inside ``terms`` and
``artefact``, which are stored sealed (``consent.sealing``: AES-256-GCM bound to the consent
id). No other column holds a national id, a name or a payload value. ``consent_events`` is
append-only: the migration installs triggers that reject UPDATE and DELETE on SQLite and
PostgreSQL.

Event sequence numbers come from the single ``consent_feed`` row, incremented inside the writing
transaction. The row lock serialises writers, so sequence order is commit order and a change
feed reader that resumes "after seq N" never skips an event committed late (a plain
auto-increment would allow that on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

metadata = sa.MetaData()

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("subject_tag", sa.String(64), nullable=False, index=True),
    sa.Column("grantee", sa.String(270), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("terms", sa.Text, nullable=False),  # sealed canonical JSON of the terms
    sa.Column("artefact", sa.Text, nullable=False),  # sealed compact JWS, "" while pending
    sa.Column("supersedes", sa.String(40), nullable=False),
    sa.Column("requested_by", sa.String(270), nullable=False),
    sa.Column("uses", sa.Integer, nullable=False),
    sa.Column("max_uses", sa.Integer, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("valid_until_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_consents_state_valid_until", "state", "valid_until_ms"),
)

consent_events = sa.Table(
    "consent_events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("consent_id", sa.String(40), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(300), nullable=False),
    sa.Column("subject_tag", sa.String(64), nullable=False),
    sa.Column("grantee", sa.String(270), nullable=False),
    sa.Column("services", sa.Text, nullable=False),  # space-separated service ids
    sa.Column("version", sa.BigInteger, nullable=False),
)

consent_feed = sa.Table(
    "consent_feed",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

#: How far the audit shipper got: every event up to ``shipped_seq`` is in the audit log.
consent_audit_cursor = sa.Table(
    "consent_audit_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1
    sa.Column("shipped_seq", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class EventRow:
    seq: int
    consent_id: str
    action: str
    state: str
    at_ms: int
    actor: str
    subject_tag: str
    grantee: str
    services: tuple[str, ...]
    version: int


def _event(row: Any) -> EventRow:
    return EventRow(
        seq=int(row.seq),
        consent_id=row.consent_id,
        action=row.action,
        state=row.state,
        at_ms=int(row.at_ms),
        actor=row.actor,
        subject_tag=row.subject_tag,
        grantee=row.grantee,
        services=tuple(row.services.split()) if row.services else (),
        version=int(row.version),
    )


def insert_consent(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(consents.insert().values(**values))


def get_consent(conn: Connection, consent_id: str, *, for_update: bool = False) -> Any | None:
    """One consent row; ``for_update`` locks it until commit (PostgreSQL; SQLite writers
    already hold the database write lock)."""
    query = sa.select(consents).where(consents.c.id == consent_id)
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def update_consent(
    conn: Connection, consent_id: str, expected_version: int, values: dict[str, Any]
) -> bool:
    """Update one consent if it is still at ``expected_version`` (optimistic check)."""
    result = conn.execute(
        consents.update()
        .where(consents.c.id == consent_id, consents.c.version == expected_version)
        .values(**values)
    )
    return result.rowcount == 1


def consents_of_subject(
    conn: Connection, subject_tag: str, *, grantee: str | None = None, for_update: bool = False
) -> Sequence[Any]:
    query = sa.select(consents).where(consents.c.subject_tag == subject_tag)
    if grantee is not None:
        query = query.where(consents.c.grantee == grantee)
    query = query.order_by(consents.c.created_at_ms, consents.c.id)
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).all()


def consents_of_grantee(
    conn: Connection, grantee: str, *, subject_tag: str | None = None, limit: int = 1000
) -> Sequence[Any]:
    query = sa.select(consents).where(consents.c.grantee == grantee)
    if subject_tag is not None:
        query = query.where(consents.c.subject_tag == subject_tag)
    return conn.execute(
        query.order_by(consents.c.created_at_ms.desc(), consents.c.id).limit(limit)
    ).all()


def due_for_expiry(conn: Connection, now_ms: int, states: Sequence[str], limit: int) -> list[str]:
    rows = conn.execute(
        sa.select(consents.c.id)
        .where(consents.c.state.in_(states), consents.c.valid_until_ms <= now_ms)
        .order_by(consents.c.valid_until_ms)
        .limit(limit)
    ).all()
    return [r.id for r in rows]


def next_seq(conn: Connection) -> int:
    """Take the feed lock and the next event sequence number (inside a write transaction)."""
    row = conn.execute(
        consent_feed.update()
        .where(consent_feed.c.id == 1)
        .values(last_seq=consent_feed.c.last_seq + 1)
        .returning(consent_feed.c.last_seq)
    ).first()
    if row is None:
        conn.execute(consent_feed.insert().values(id=1, last_seq=1))
        return 1
    return int(row.last_seq)


def append_event(conn: Connection, values: dict[str, Any]) -> EventRow:
    """Append one event with the next sequence number (caller is in a write transaction)."""
    seq = next_seq(conn)
    conn.execute(consent_events.insert().values(seq=seq, **values))
    return EventRow(
        seq=seq,
        consent_id=values["consent_id"],
        action=values["action"],
        state=values["state"],
        at_ms=values["at_ms"],
        actor=values["actor"],
        subject_tag=values["subject_tag"],
        grantee=values["grantee"],
        services=tuple(values["services"].split()),
        version=values["version"],
    )


def head_seq(conn: Connection) -> int:
    value = conn.execute(sa.select(consent_feed.c.last_seq).where(consent_feed.c.id == 1)).scalar()
    return int(value or 0)


def events_after(conn: Connection, after_seq: int, limit: int) -> list[EventRow]:
    rows = conn.execute(
        sa.select(consent_events)
        .where(consent_events.c.seq > after_seq)
        .order_by(consent_events.c.seq)
        .limit(limit)
    ).all()
    return [_event(r) for r in rows]


def events_of(conn: Connection, consent_id: str) -> list[EventRow]:
    rows = conn.execute(
        sa.select(consent_events)
        .where(consent_events.c.consent_id == consent_id)
        .order_by(consent_events.c.seq)
    ).all()
    return [_event(r) for r in rows]


def shipped_seq(conn: Connection) -> int:
    """The last event sequence number the audit log acknowledged (0: none)."""
    value = conn.execute(
        sa.select(consent_audit_cursor.c.shipped_seq).where(consent_audit_cursor.c.id == 1)
    ).scalar()
    return int(value or 0)


def advance_shipped(conn: Connection, seq: int) -> None:
    """Move the audit cursor forward to ``seq`` (never back; caller is in a write transaction)."""
    current = conn.execute(
        sa.select(consent_audit_cursor.c.shipped_seq).where(consent_audit_cursor.c.id == 1)
    ).first()
    if current is None:
        conn.execute(consent_audit_cursor.insert().values(id=1, shipped_seq=seq))
    elif int(current.shipped_seq) < seq:
        conn.execute(
            consent_audit_cursor.update()
            .where(consent_audit_cursor.c.id == 1)
            .values(shipped_seq=seq)
        )


def consents_by_id(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    """Consent rows by id (the ones that exist)."""
    if not ids:
        return {}
    rows = conn.execute(sa.select(consents).where(consents.c.id.in_(list(ids)))).all()
    return {r.id: r for r in rows}


def consents_sealed_otherwise(
    conn: Connection, sealed_prefix: str, after_id: str, limit: int
) -> Sequence[Any]:
    """Up to ``limit`` consents after ``after_id`` (by id) whose terms or artefact do not start
    with ``sealed_prefix``, locked until commit."""
    pattern = sealed_prefix.replace("_", "\\_").replace("%", "\\%") + "%"
    other = sa.or_(
        consents.c.terms.not_like(pattern, escape="\\"),
        sa.and_(consents.c.artefact != "", consents.c.artefact.not_like(pattern, escape="\\")),
    )
    return conn.execute(
        sa.select(consents.c.id, consents.c.terms, consents.c.artefact)
        .where(consents.c.id > after_id, other)
        .order_by(consents.c.id)
        .limit(limit)
        .with_for_update()
    ).all()


def replace_sealed(conn: Connection, consent_id: str, terms: str, artefact: str) -> None:
    """Store resealed values (same plaintext: neither the version nor an event changes)."""
    conn.execute(
        consents.update().where(consents.c.id == consent_id).values(terms=terms, artefact=artefact)
    )
