"""Dead letters: outbox records the audit log refused for good.

Revision ID: security_server_0002
Revises: security_server_0001
Create Date: 2025-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "security_server_0002"
down_revision = "security_server_0001"
branch_labels = None
depends_on = None

_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ss_dead_letters",
        sa.Column("id", _BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("dead_ms", sa.BigInteger, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("released", sa.Boolean, nullable=False),
        sa.Column("requeued_ms", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "ix_ss_dead_letters_record", "ss_dead_letters", ["record_id", "requeued_ms"]
    )


def downgrade() -> None:
    op.drop_index("ix_ss_dead_letters_record", table_name="ss_dead_letters")
    op.drop_table("ss_dead_letters")
