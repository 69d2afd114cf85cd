"""Appends the log refused for good: recorder, record id, code and time, append-only.

Revision ID: audit_0002
Revises: audit_0001
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "audit_0002"
down_revision = "audit_0001"
branch_labels = None
depends_on = None

_IDX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "audit_refused"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", _IDX, primary_key=True, autoincrement=True),
        sa.Column("recorder", sa.String(300), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("refused_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("recorder", "record_id", "code", name="uq_audit_refused_item"),
    )
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{event.lower()} BEFORE {event} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END"
            )
        return
    # audit_append_only() was created by audit_0001.
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
        f"ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
    )
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {TABLE} FROM PUBLIC")


def downgrade() -> None:
    op.drop_table(TABLE)
