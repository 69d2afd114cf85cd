"""The representation tables of the consent database (SQLAlchemy Core) and the queries over
them; no domain rules.

``relations`` keeps in clear only what queries need and names no person: the keyed tags of
both people (``consent.model.subject_tag``, the consents' own tag), the kind, scopes,
registering authority and times. The national ids, names, majority date, reference and end
reason are one canonical JSON value sealed under the data keys (``consent.sealing``, bound to
the relation id and the ``relation`` column). ``relation_events`` is append-only (triggers on
SQLite and PostgreSQL, migration ``consent_0005``): who registered, amended or ended which
relation, and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consent.store import metadata

#: The sealed column of ``relations`` (the associated data of its AES-GCM seal).
SEALED_COLUMN = "relation"

relations = sa.Table(
    "relations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("representative_tag", sa.String(64), nullable=False, index=True),
    sa.Column("represented_tag", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("scopes", sa.String(64), nullable=False),  # space-separated scope names
    sa.Column("authority", sa.String(270), nullable=False),
    sa.Column("valid_from_ms", sa.BigInteger, nullable=False),
    sa.Column("valid_until_ms", sa.BigInteger, nullable=False),  # 0 = open-ended
    sa.Column("ended_at_ms", sa.BigInteger, nullable=False),  # 0 = not ended
    sa.Column("sealed", sa.Text, nullable=False),  # sealed canonical JSON: people, dates, names
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

relation_events = sa.Table(
    "relation_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("relation_id", sa.String(40), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),  # registered, amended, ended
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(300), nullable=False),  # the authority subsystem
    sa.Column("version", sa.BigInteger, nullable=False),
)


def insert(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(relations.insert().values(**values))


def get(conn: Connection, relation_id: str, *, for_update: bool = False) -> Any | None:
    query = sa.select(relations).where(relations.c.id == relation_id)
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def update(
    conn: Connection, relation_id: str, expected_version: int, values: dict[str, Any]
) -> bool:
    """Update one relation if it is still at ``expected_version`` (optimistic check)."""
    result = conn.execute(
        relations.update()
        .where(relations.c.id == relation_id, relations.c.version == expected_version)
        .values(**values)
    )
    return result.rowcount == 1


def between(conn: Connection, representative_tag: str, represented_tag: str) -> Sequence[Any]:
    """Every relation in which the first person represents the second."""
    return conn.execute(
        sa.select(relations)
        .where(
            relations.c.representative_tag == representative_tag,
            relations.c.represented_tag == represented_tag,
        )
        .order_by(relations.c.created_at_ms, relations.c.id)
    ).all()


def of_representative(conn: Connection, tag: str, limit: int) -> Sequence[Any]:
    return conn.execute(
        sa.select(relations)
        .where(relations.c.representative_tag == tag)
        .order_by(relations.c.created_at_ms, relations.c.id)
        .limit(limit)
    ).all()


def of_represented(conn: Connection, tag: str, limit: int) -> Sequence[Any]:
    return conn.execute(
        sa.select(relations)
        .where(relations.c.represented_tag == tag)
        .order_by(relations.c.created_at_ms, relations.c.id)
        .limit(limit)
    ).all()


def of_person(conn: Connection, tag: str, limit: int) -> Sequence[Any]:
    """Relations in which the person is either party."""
    return conn.execute(
        sa.select(relations)
        .where(sa.or_(relations.c.representative_tag == tag, relations.c.represented_tag == tag))
        .order_by(relations.c.created_at_ms, relations.c.id)
        .limit(limit)
    ).all()


def append_event(
    conn: Connection, relation_id: str, action: str, at_ms: int, actor: str, version: int
) -> None:
    conn.execute(
        relation_events.insert().values(
            relation_id=relation_id, action=action, at_ms=at_ms, actor=actor, version=version
        )
    )


def events_of(conn: Connection, relation_id: str) -> Sequence[Any]:
    return conn.execute(
        sa.select(relation_events)
        .where(relation_events.c.relation_id == relation_id)
        .order_by(relation_events.c.seq)
    ).all()


def sealed_otherwise(
    conn: Connection, sealed_prefix: str, after_id: str, limit: int
) -> Sequence[Any]:
    """Up to ``limit`` relations after ``after_id`` (by id) not sealed under ``sealed_prefix``,
    locked until commit (a data-key rotation reseals them)."""
    pattern = sealed_prefix.replace("_", "\\_").replace("%", "\\%") + "%"
    return conn.execute(
        sa.select(relations.c.id, relations.c.sealed)
        .where(relations.c.id > after_id, relations.c.sealed.not_like(pattern, escape="\\"))
        .order_by(relations.c.id)
        .limit(limit)
        .with_for_update()
    ).all()


def replace_sealed(conn: Connection, relation_id: str, sealed: str) -> None:
    conn.execute(relations.update().where(relations.c.id == relation_id).values(sealed=sealed))
