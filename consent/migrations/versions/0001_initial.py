"""Consent schema: consents, the append-only consent_events and the feed sequence row.

Revision ID: consent_0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "consent_0001"
down_revision = None
branch_labels = None
depends_on = None

_APPEND_ONLY_PG = """
CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("subject_tag", sa.String(64), nullable=False),
        sa.Column("grantee", sa.String(270), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("terms", sa.Text, nullable=False),
        sa.Column("artefact", sa.Text, nullable=False),
        sa.Column("supersedes", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(270), nullable=False),
        sa.Column("uses", sa.Integer, nullable=False),
        sa.Column("max_uses", sa.Integer, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("valid_until_ms", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_consents_subject_tag", "consents", ["subject_tag"])
    op.create_index("ix_consents_grantee", "consents", ["grantee"])
    op.create_index("ix_consents_state_valid_until", "consents", ["state", "valid_until_ms"])
    op.create_table(
        "consent_events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("consent_id", sa.String(40), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("subject_tag", sa.String(64), nullable=False),
        sa.Column("grantee", sa.String(270), nullable=False),
        sa.Column("services", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_consent_events_consent_id", "consent_events", ["consent_id"])
    op.create_table(
        "consent_feed",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO consent_feed (id, last_seq) VALUES (1, 0)")
    # Every consent change is evidence (DESIGN §7): refuse UPDATE and DELETE on the event log.
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER consent_events_no_{event.lower()} BEFORE {event} "
                "ON consent_events BEGIN "
                "SELECT RAISE(ABORT, 'consent_events is append-only'); END"
            )
    else:
        op.execute(_APPEND_ONLY_PG)
        op.execute(
            "CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            "ON consent_events FOR EACH STATEMENT "
            "EXECUTE FUNCTION consent_events_append_only()"
        )


def downgrade() -> None:
    for table in ("consent_feed", "consent_events", "consents"):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS consent_events_append_only()")
