"""Audit log schema: leaves, tree nodes, tree state, checkpoints, cosignatures, openings, keys,
subject index and unseals; append-only triggers on SQLite and PostgreSQL.

Revision ID: audit_0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "audit_0001"
down_revision = None
branch_labels = None
depends_on = None

_IDX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_HASH = sa.LargeBinary(32)

APPEND_ONLY = (
    "audit_leaves",
    "audit_nodes",
    "audit_checkpoints",
    "audit_cosignatures",
    "audit_openings",
    "audit_unseals",
)

_PG_APPEND_ONLY_FN = """
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql
"""

_PG_TREE_STATE_FN = """
CREATE OR REPLACE FUNCTION audit_tree_state_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_tree_state cannot be deleted';
    END IF;
    IF NEW.size < OLD.size OR NEW.version <= OLD.version THEN
        RAISE EXCEPTION 'audit_tree_state cannot move backwards';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "audit_leaves",
        sa.Column("idx", _IDX, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.String(64), nullable=False, unique=True),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", _HASH, nullable=False),
        sa.Column("recorder", sa.String(300), nullable=False),
        sa.Column("role", sa.SmallInteger, nullable=False),
        sa.Column("client", sa.String(300), nullable=False),
        sa.Column("service", sa.String(400), nullable=False),
        sa.Column("purpose", sa.String(100), nullable=False),
        sa.Column("decision", sa.SmallInteger, nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("visibility", sa.SmallInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("integrated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_audit_leaves_client_time", "audit_leaves", ["client", "time_ms"])
    op.create_index("ix_audit_leaves_service_time", "audit_leaves", ["service", "time_ms"])
    op.create_index("ix_audit_leaves_time", "audit_leaves", ["time_ms"])
    op.create_index("ix_audit_leaves_message", "audit_leaves", ["message_id"])
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", _HASH, nullable=False),
        sqlite_with_rowid=False,
    )
    tree_state = op.create_table(
        "audit_tree_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", _HASH, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", _HASH, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("published_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(300), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_openings",
        sa.Column("idx", _IDX, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.String(16), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("destroyed_at_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "audit_subject_index",
        sa.Column("subject_mac", _HASH, primary_key=True),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.String(16), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_audit_subject_index_epoch", "audit_subject_index", ["epoch"])
    op.create_table(
        "audit_unseals",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("unseal_idx", sa.BigInteger, nullable=False),
        sa.Column("unsealed_at_ms", sa.BigInteger, nullable=False),
    )
    # The empty tree: the row the sequencers compare-and-swap. Frontier of size 0 = 8 zero bytes.
    op.bulk_insert(
        tree_state,
        [
            {
                "id": 1,
                "size": 0,
                "root": bytes.fromhex(
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                ),
                "frontier": bytes(8),
                "version": 0,
                "updated_at_ms": int(time.time() * 1000),
            }
        ],
    )

    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        op.execute(
            "CREATE TRIGGER audit_tree_state_no_delete BEFORE DELETE ON audit_tree_state "
            "BEGIN SELECT RAISE(ABORT, 'audit_tree_state cannot be deleted'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_tree_state_forward_only BEFORE UPDATE ON audit_tree_state "
            "WHEN NEW.size < OLD.size OR NEW.version <= OLD.version "
            "BEGIN SELECT RAISE(ABORT, 'audit_tree_state cannot move backwards'); END"
        )
        return
    op.execute(_PG_APPEND_ONLY_FN)
    op.execute(_PG_TREE_STATE_FN)
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
        )
        # Production runs the service under a role without these grants at all; revoking them
        # from PUBLIC documents the intent in the schema itself.
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER audit_tree_state_guard BEFORE UPDATE OR DELETE ON audit_tree_state "
        "FOR EACH ROW EXECUTE FUNCTION audit_tree_state_guard()"
    )
    op.execute(
        "CREATE TRIGGER audit_tree_state_no_truncate BEFORE TRUNCATE ON audit_tree_state "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
    )


def downgrade() -> None:
    for table in (
        "audit_unseals",
        "audit_subject_index",
        "audit_keys",
        "audit_openings",
        "audit_cosignatures",
        "audit_checkpoints",
        "audit_tree_state",
        "audit_nodes",
        "audit_leaves",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
        op.execute("DROP FUNCTION IF EXISTS audit_tree_state_guard()")
