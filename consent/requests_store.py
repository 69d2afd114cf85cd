"""The data-subject request tables (SQLAlchemy Core) and the queries over them; no domain rules.

Times are Unix milliseconds. As for consents (``consent.store``), the subject is looked up only
by its keyed ``subject_tag``; what names or quotes the citizen is sealed (``consent.sealing``,
bound to the request id and column):

- ``dossier``: canonical JSON ``{"subject": <national id>, "texts": {<seq>: <text>}}``, the
  texts being the details, reasons and answers written with each step;
- ``bundle``: an access request's signed bundle (``audit.bundles``), ``""`` otherwise.

``subject_request_events`` is append-only (triggers, migration ``consent_0004``) and holds no
text and no national id: action, state, time, actor (``citizen``, ``system``, a subsystem id or
an inspector's name), the kind, addressee, purpose and service. Its sequence numbers come from
the one ``subject_request_feed`` row, taken inside the writing transaction, so sequence order
is commit order and the audit shipper resuming "after N" never skips a late commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consent.store import metadata

#: The sealed columns of ``subject_requests``.
DOSSIER, BUNDLE = "request_dossier", "request_bundle"

subject_requests = sa.Table(
    "subject_requests",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("subject_tag", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("addressee", sa.String(270), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("purpose", sa.String(100), nullable=False),
    sa.Column("service", sa.String(400), nullable=False),
    sa.Column("dossier", sa.Text, nullable=False),  # sealed JSON: subject and texts
    sa.Column("bundle", sa.Text, nullable=False),  # sealed signed access bundle, or ""
    sa.Column("extended", sa.Boolean, nullable=False),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("acknowledge_by_ms", sa.BigInteger, nullable=False),
    sa.Column("complete_by_ms", sa.BigInteger, nullable=False),
    sa.Column("closed_at_ms", sa.BigInteger, nullable=False),  # 0 while open
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Index("ix_subject_requests_state_complete_by", "state", "complete_by_ms"),
)

subject_request_events = sa.Table(
    "subject_request_events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("request_id", sa.String(40), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(300), nullable=False),
    sa.Column("subject_tag", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("addressee", sa.String(270), nullable=False),
    sa.Column("purpose", sa.String(100), nullable=False),
    sa.Column("service", sa.String(400), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

subject_request_feed = sa.Table(
    "subject_request_feed",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

#: How far the audit shipper got: every request event up to ``shipped_seq`` is in the log.
subject_request_audit_cursor = sa.Table(
    "subject_request_audit_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1
    sa.Column("shipped_seq", sa.BigInteger, nullable=False),
)

_FINAL_STATES = ("COMPLETED", "REFUSED", "WITHDRAWN")


@dataclass(frozen=True)
class RequestEventRow:
    seq: int
    request_id: str
    action: str
    state: str
    at_ms: int
    actor: str
    subject_tag: str
    kind: str
    addressee: str
    purpose: str
    service: str
    version: int


def _event(row: Any) -> RequestEventRow:
    return RequestEventRow(
        seq=int(row.seq),
        request_id=row.request_id,
        action=row.action,
        state=row.state,
        at_ms=int(row.at_ms),
        actor=row.actor,
        subject_tag=row.subject_tag,
        kind=row.kind,
        addressee=row.addressee,
        purpose=row.purpose,
        service=row.service,
        version=int(row.version),
    )


def insert_request(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(subject_requests.insert().values(**values))


def get_request(conn: Connection, request_id: str, *, for_update: bool = False) -> Any | None:
    query = sa.select(subject_requests).where(subject_requests.c.id == request_id)
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def update_request(
    conn: Connection, request_id: str, expected_version: int, values: dict[str, Any]
) -> bool:
    """Update one request if it is still at ``expected_version`` (optimistic check)."""
    result = conn.execute(
        subject_requests.update()
        .where(
            subject_requests.c.id == request_id,
            subject_requests.c.version == expected_version,
        )
        .values(**values)
    )
    return result.rowcount == 1


def requests_of_subject(conn: Connection, subject_tag: str, limit: int) -> Sequence[Any]:
    """A subject's requests, newest first."""
    return conn.execute(
        sa.select(subject_requests)
        .where(subject_requests.c.subject_tag == subject_tag)
        .order_by(subject_requests.c.received_at_ms.desc(), subject_requests.c.id)
        .limit(limit)
    ).all()


def open_count(conn: Connection, subject_tag: str) -> int:
    """How many of a subject's requests are still open."""
    value = conn.execute(
        sa.select(sa.func.count())
        .select_from(subject_requests)
        .where(
            subject_requests.c.subject_tag == subject_tag,
            subject_requests.c.state.not_in(_FINAL_STATES),
        )
    ).scalar()
    return int(value or 0)


def requests_addressed(
    conn: Connection,
    addressees: Collection[str],
    kinds: Collection[str],
    states: Collection[str],
    limit: int,
) -> Sequence[Any]:
    """Requests to any of ``addressees`` of ``kinds`` in ``states``, oldest deadline first."""
    return conn.execute(
        sa.select(subject_requests)
        .where(
            subject_requests.c.addressee.in_(list(addressees)),
            subject_requests.c.kind.in_(list(kinds)),
            subject_requests.c.state.in_(list(states)),
        )
        .order_by(subject_requests.c.complete_by_ms, subject_requests.c.id)
        .limit(limit)
    ).all()


def overdue_requests(conn: Connection, now_ms: int, limit: int) -> Sequence[Any]:
    """Open requests past their completion deadline, or still unacknowledged past theirs;
    the longest overdue first."""
    open_ = subject_requests.c.state.not_in(_FINAL_STATES)
    late = sa.or_(
        subject_requests.c.complete_by_ms <= now_ms,
        sa.and_(
            subject_requests.c.state == "RECEIVED",
            subject_requests.c.acknowledge_by_ms <= now_ms,
        ),
    )
    return conn.execute(
        sa.select(subject_requests)
        .where(open_, late)
        .order_by(subject_requests.c.acknowledge_by_ms, subject_requests.c.id)
        .limit(limit)
    ).all()


def next_seq(conn: Connection) -> int:
    """Take the feed lock and the next event sequence number (inside a write transaction)."""
    row = conn.execute(
        subject_request_feed.update()
        .where(subject_request_feed.c.id == 1)
        .values(last_seq=subject_request_feed.c.last_seq + 1)
        .returning(subject_request_feed.c.last_seq)
    ).first()
    if row is None:
        conn.execute(subject_request_feed.insert().values(id=1, last_seq=1))
        return 1
    return int(row.last_seq)


def append_event(conn: Connection, values: dict[str, Any]) -> RequestEventRow:
    """Append one event with the next sequence number (caller is in a write transaction)."""
    seq = next_seq(conn)
    conn.execute(subject_request_events.insert().values(seq=seq, **values))
    return RequestEventRow(seq=seq, **values)


def events_of(conn: Connection, request_ids: Sequence[str]) -> dict[str, list[RequestEventRow]]:
    """The events of each request, in order."""
    if not request_ids:
        return {}
    rows = conn.execute(
        sa.select(subject_request_events)
        .where(subject_request_events.c.request_id.in_(list(request_ids)))
        .order_by(subject_request_events.c.seq)
    ).all()
    out: dict[str, list[RequestEventRow]] = {rid: [] for rid in request_ids}
    for row in rows:
        out[row.request_id].append(_event(row))
    return out


def head_seq(conn: Connection) -> int:
    value = conn.execute(
        sa.select(subject_request_feed.c.last_seq).where(subject_request_feed.c.id == 1)
    ).scalar()
    return int(value or 0)


def events_after(conn: Connection, after_seq: int, limit: int) -> list[RequestEventRow]:
    rows = conn.execute(
        sa.select(subject_request_events)
        .where(subject_request_events.c.seq > after_seq)
        .order_by(subject_request_events.c.seq)
        .limit(limit)
    ).all()
    return [_event(r) for r in rows]


def requests_by_id(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    if not ids:
        return {}
    rows = conn.execute(sa.select(subject_requests).where(subject_requests.c.id.in_(list(ids))))
    return {r.id: r for r in rows}


def shipped_seq(conn: Connection) -> int:
    """The last request event the audit log acknowledged (0: none)."""
    value = conn.execute(
        sa.select(subject_request_audit_cursor.c.shipped_seq).where(
            subject_request_audit_cursor.c.id == 1
        )
    ).scalar()
    return int(value or 0)


def advance_shipped(conn: Connection, seq: int) -> None:
    """Move the audit cursor forward to ``seq`` (never back; caller is in a write transaction)."""
    current = conn.execute(
        sa.select(subject_request_audit_cursor.c.shipped_seq).where(
            subject_request_audit_cursor.c.id == 1
        )
    ).first()
    if current is None:
        conn.execute(subject_request_audit_cursor.insert().values(id=1, shipped_seq=seq))
    elif int(current.shipped_seq) < seq:
        conn.execute(
            subject_request_audit_cursor.update()
            .where(subject_request_audit_cursor.c.id == 1)
            .values(shipped_seq=seq)
        )


def sealed_otherwise(
    conn: Connection, sealed_prefix: str, after_id: str, limit: int
) -> Sequence[Any]:
    """Up to ``limit`` requests after ``after_id`` whose dossier or bundle is not sealed
    under ``sealed_prefix`` (the current data key), locked until commit."""
    pattern = sealed_prefix.replace("_", "\\_").replace("%", "\\%") + "%"
    c = subject_requests.c
    other = sa.or_(
        c.dossier.not_like(pattern, escape="\\"),
        sa.and_(c.bundle != "", c.bundle.not_like(pattern, escape="\\")),
    )
    return conn.execute(
        sa.select(c.id, c.dossier, c.bundle)
        .where(c.id > after_id, other)
        .order_by(c.id)
        .limit(limit)
        .with_for_update()
    ).all()


def replace_sealed(conn: Connection, request_id: str, dossier: str, bundle: str) -> None:
    """Store resealed values (same plaintext: neither the version nor an event changes)."""
    conn.execute(
        subject_requests.update()
        .where(subject_requests.c.id == request_id)
        .values(dossier=dossier, bundle=bundle)
    )
