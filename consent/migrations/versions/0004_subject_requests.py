"""Consent schema: data-subject requests, their append-only events, feed row and audit cursor.

Revision ID: consent_0004
Revises: consent_0003
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "consent_0004"
down_revision = "consent_0003"
branch_labels = None
depends_on = None

_APPEND_ONLY_PG = """
CREATE OR REPLACE FUNCTION subject_request_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'subject_request_events is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("subject_tag", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("addressee", sa.String(270), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(100), nullable=False),
        sa.Column("service", sa.String(400), nullable=False),
        sa.Column("dossier", sa.Text, nullable=False),
        sa.Column("bundle", sa.Text, nullable=False),
        sa.Column("extended", sa.Boolean, nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.Column("acknowledge_by_ms", sa.BigInteger, nullable=False),
        sa.Column("complete_by_ms", sa.BigInteger, nullable=False),
        sa.Column("closed_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_subject_requests_subject_tag", "subject_requests", ["subject_tag"])
    op.create_index("ix_subject_requests_addressee", "subject_requests", ["addressee"])
    op.create_index(
        "ix_subject_requests_state_complete_by", "subject_requests", ["state", "complete_by_ms"]
    )
    op.create_table(
        "subject_request_events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(40), nullable=False),
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
    op.create_index(
        "ix_subject_request_events_request_id", "subject_request_events", ["request_id"]
    )
    op.create_table(
        "subject_request_feed",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO subject_request_feed (id, last_seq) VALUES (1, 0)")
    op.create_table(
        "subject_request_audit_cursor",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("shipped_seq", sa.BigInteger, nullable=False),
    )
    # Every step of a request is evidence: refuse UPDATE and DELETE on its event log.
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER subject_request_events_no_{event.lower()} BEFORE {event} "
                "ON subject_request_events BEGIN "
                "SELECT RAISE(ABORT, 'subject_request_events is append-only'); END"
            )
    else:
        op.execute(_APPEND_ONLY_PG)
        op.execute(
            "CREATE TRIGGER subject_request_events_append_only BEFORE UPDATE OR DELETE OR "
            "TRUNCATE ON subject_request_events FOR EACH STATEMENT "
            "EXECUTE FUNCTION subject_request_events_append_only()"
        )


def downgrade() -> None:
    for table in (
        "subject_request_audit_cursor",
        "subject_request_feed",
        "subject_request_events",
        "subject_requests",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS subject_request_events_append_only()")
