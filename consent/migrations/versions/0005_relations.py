"""Consent schema: legal representation relations and their append-only event log.

Revision ID: consent_0005
Revises: consent_0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "consent_0005"
down_revision = "consent_0004"
branch_labels = None
depends_on = None

_APPEND_ONLY_PG = """
CREATE OR REPLACE FUNCTION relation_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'relation_events is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "relations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("representative_tag", sa.String(64), nullable=False),
        sa.Column("represented_tag", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("authority", sa.String(270), nullable=False),
        sa.Column("valid_from_ms", sa.BigInteger, nullable=False),
        sa.Column("valid_until_ms", sa.BigInteger, nullable=False),
        sa.Column("ended_at_ms", sa.BigInteger, nullable=False),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_relations_representative_tag", "relations", ["representative_tag"])
    op.create_index("ix_relations_represented_tag", "relations", ["represented_tag"])
    op.create_table(
        "relation_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("relation_id", sa.String(40), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_relation_events_relation_id", "relation_events", ["relation_id"])
    # Who registered, amended or ended a relation is evidence: refuse UPDATE and DELETE.
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER relation_events_no_{event.lower()} BEFORE {event} "
                "ON relation_events BEGIN "
                "SELECT RAISE(ABORT, 'relation_events is append-only'); END"
            )
    else:
        op.execute(_APPEND_ONLY_PG)
        op.execute(
            "CREATE TRIGGER relation_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            "ON relation_events FOR EACH STATEMENT "
            "EXECUTE FUNCTION relation_events_append_only()"
        )


def downgrade() -> None:
    for table in ("relation_events", "relations"):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS relation_events_append_only()")
