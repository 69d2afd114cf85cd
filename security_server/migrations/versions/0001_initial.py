"""Security server schema: access-record outbox and replay cache.

Revision ID: security_server_0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "security_server_0001"
down_revision = None
branch_labels = None
depends_on = None

_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ss_outbox",
        sa.Column("seq", _BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(36), nullable=False, unique=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("signed_record", sa.LargeBinary, nullable=False),
        sa.Column("sealed_opening", sa.LargeBinary, nullable=True),
        sa.Column("shipped_ms", sa.BigInteger, nullable=True),
        sa.Column("log_index", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(64), nullable=True),
    )
    op.create_index("ix_ss_outbox_pending", "ss_outbox", ["shipped_ms", "seq"])
    op.create_table(
        "ss_replay",
        sa.Column("consumer_server", sa.String(300), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ss_replay_expires", "ss_replay", ["expires_ms"])


def downgrade() -> None:
    op.drop_index("ix_ss_replay_expires", table_name="ss_replay")
    op.drop_table("ss_replay")
    op.drop_index("ix_ss_outbox_pending", table_name="ss_outbox")
    op.drop_table("ss_outbox")
