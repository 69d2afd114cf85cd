"""Notification schema: sealed preferences, the audit-log cursor and the outbox.

Revision ID: notify_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "notify_0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notify_preferences",
        sa.Column("subject_tag", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "notify_cursor",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("after_index", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO notify_cursor (id, after_index, updated_at_ms) VALUES (1, -1, 0)")
    op.create_table(
        "notify_outbox",
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
    op.create_index("ix_notify_outbox_due", "notify_outbox", ["state", "next_attempt_ms"])


def downgrade() -> None:
    op.drop_table("notify_outbox")
    op.drop_table("notify_cursor")
    op.drop_table("notify_preferences")
