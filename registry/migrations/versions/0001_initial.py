"""Registry schema: instance, members, subsystems, servers, services, purposes, agreements,
trust anchors, certificates, signed configurations and the append-only history.

Revision ID: registry_0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0001"
down_revision = None
branch_labels = None
depends_on = None

_APPEND_ONLY_PG = """
CREATE OR REPLACE FUNCTION registry_history_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'registry_history is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "registry_instance",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("registry_key_id", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_members",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_subsystems",
        sa.Column("id", sa.String(270), primary_key=True),
        sa.Column(
            "member_id", sa.String(200), sa.ForeignKey("registry_members.id"), nullable=False
        ),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_servers",
        sa.Column("id", sa.String(270), primary_key=True),
        sa.Column(
            "member_id", sa.String(200), sa.ForeignKey("registry_members.id"), nullable=False
        ),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("auth_cert", sa.LargeBinary, nullable=False),
        sa.Column("signing_cert", sa.LargeBinary, nullable=False),
        sa.Column("auth_fingerprint", sa.String(64), nullable=False),
        sa.Column("signing_key_id", sa.String(64), nullable=False),
        sa.Column("hpke_public_key", sa.LargeBinary, nullable=False),
        sa.Column("witness_public_key", sa.LargeBinary, nullable=False),
        sa.Column("subsystems", sa.Text, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_services",
        sa.Column("id", sa.String(400), primary_key=True),
        sa.Column(
            "subsystem_id",
            sa.String(270),
            sa.ForeignKey("registry_subsystems.id"),
            nullable=False,
        ),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("data_categories", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_purposes",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("description_vi", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_agreements",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "client", sa.String(270), sa.ForeignKey("registry_subsystems.id"), nullable=False
        ),
        sa.Column(
            "service", sa.String(400), sa.ForeignKey("registry_services.id"), nullable=False
        ),
        sa.Column(
            "purpose", sa.String(64), sa.ForeignKey("registry_purposes.code"), nullable=False
        ),
        sa.Column("lawful_basis", sa.String(32), nullable=False),
        sa.Column("legal_reference", sa.Text, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=False),
        sa.Column("sealed", sa.Boolean, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("client", "service", "purpose", name="uq_registry_agreement_triple"),
    )
    op.create_table(
        "registry_trust_anchors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_certificates",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("not_after_ms", sa.BigInteger, nullable=False),
        sa.Column("issued_at_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
        sa.Column("revocation_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_registry_certificates_revoked", "registry_certificates", ["revoked_at_ms"])
    op.create_table(
        "registry_confs",
        sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("issued_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "registry_history",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
        ),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(400), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    # The admin history is append-only (who changed what, when): refuse UPDATE and DELETE.
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER registry_history_no_{event.lower()} BEFORE {event} "
                "ON registry_history BEGIN "
                "SELECT RAISE(ABORT, 'registry_history is append-only'); END"
            )
    else:
        op.execute(_APPEND_ONLY_PG)
        op.execute(
            "CREATE TRIGGER registry_history_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            "ON registry_history FOR EACH STATEMENT "
            "EXECUTE FUNCTION registry_history_append_only()"
        )


def downgrade() -> None:
    for table in (
        "registry_history",
        "registry_confs",
        "registry_certificates",
        "registry_trust_anchors",
        "registry_agreements",
        "registry_purposes",
        "registry_services",
        "registry_servers",
        "registry_subsystems",
        "registry_members",
        "registry_instance",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS registry_history_append_only()")
