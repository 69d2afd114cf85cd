"""Consent schema: the audit shipper's cursor (how far consent events reached the audit log).

Revision ID: consent_0002
Revises: consent_0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "consent_0002"
down_revision = "consent_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_audit_cursor",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("shipped_seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consent_audit_cursor")
