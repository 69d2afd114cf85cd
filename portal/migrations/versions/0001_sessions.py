"""Portal schema: server-side sessions (the cookie holds only a random id).

Revision ID: portal_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "portal_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("seen_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_portal_sessions_expires_at_ms", "portal_sessions", ["expires_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_portal_sessions_expires_at_ms", "portal_sessions")
    op.drop_table("portal_sessions")
