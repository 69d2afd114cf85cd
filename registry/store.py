"""The registry's tables (SQLAlchemy Core) and the queries over them; no domain rules here.

Times are stored as Unix milliseconds (``BIGINT``) so SQLite and PostgreSQL agree exactly.
Lists of names (fields, data categories) are stored as JSON text. ``history`` is append-only:
the migration installs triggers that reject UPDATE and DELETE on both databases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

metadata = sa.MetaData()

instance = sa.Table(
    "registry_instance",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: one instance per database
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("registry_key_id", sa.String(64), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

members = sa.Table(
    "registry_members",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

subsystems = sa.Table(
    "registry_subsystems",
    metadata,
    sa.Column("id", sa.String(270), primary_key=True),
    sa.Column("member_id", sa.String(200), sa.ForeignKey("registry_members.id"), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

servers = sa.Table(
    "registry_servers",
    metadata,
    sa.Column("id", sa.String(270), primary_key=True),
    sa.Column("member_id", sa.String(200), sa.ForeignKey("registry_members.id"), nullable=False),
    sa.Column("address", sa.String(300), nullable=False),
    sa.Column("auth_cert", sa.LargeBinary, nullable=False),  # DER
    sa.Column("signing_cert", sa.LargeBinary, nullable=False),  # DER
    sa.Column("auth_fingerprint", sa.String(64), nullable=False),
    sa.Column("signing_key_id", sa.String(64), nullable=False),
    sa.Column("hpke_public_key", sa.LargeBinary, nullable=False),
    sa.Column("witness_public_key", sa.LargeBinary, nullable=False),
    sa.Column("subsystems", sa.Text, nullable=False),  # JSON list of subsystem ids
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
)

services = sa.Table(
    "registry_services",
    metadata,
    sa.Column("id", sa.String(400), primary_key=True),
    sa.Column(
        "subsystem_id", sa.String(270), sa.ForeignKey("registry_subsystems.id"), nullable=False
    ),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),  # JSON list
    sa.Column("data_categories", sa.Text, nullable=False),  # JSON list
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

purposes = sa.Table(
    "registry_purposes",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("description_vi", sa.Text, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

agreements = sa.Table(
    "registry_agreements",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client", sa.String(270), sa.ForeignKey("registry_subsystems.id"), nullable=False),
    sa.Column("service", sa.String(400), sa.ForeignKey("registry_services.id"), nullable=False),
    sa.Column("purpose", sa.String(64), sa.ForeignKey("registry_purposes.code"), nullable=False),
    sa.Column("lawful_basis", sa.String(32), nullable=False),
    sa.Column("legal_reference", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),  # JSON list
    sa.Column("rate_limit_per_minute", sa.Integer, nullable=False),
    sa.Column("retention_days", sa.Integer, nullable=False),
    sa.Column("sealed", sa.Boolean, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("client", "service", "purpose", name="uq_registry_agreement_triple"),
)

trust_anchors = sa.Table(
    "registry_trust_anchors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1
    sa.Column("data", sa.LargeBinary, nullable=False),  # serialized cdx.v1.TrustAnchors
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

certificates = sa.Table(
    "registry_certificates",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("serial", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # auth signing admin client ...
    sa.Column("subject", sa.String(300), nullable=False),  # server id, admin name, ...
    sa.Column("not_after_ms", sa.BigInteger, nullable=False),
    sa.Column("issued_at_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
    sa.Column("revocation_reason", sa.Text, nullable=True),
    sa.Index("ix_registry_certificates_revoked", "revoked_at_ms"),
)

confs = sa.Table(
    "registry_confs",
    metadata,
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("issued_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),  # SignedGlobalConf bytes
)

history = sa.Table(
    "registry_history",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(400), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

#: How many signed configurations to keep (older ones are only of historic interest).
CONF_KEEP = 50


def dumps(values: Iterable[str]) -> str:
    return json.dumps(list(values))


def loads(text: str) -> list[str]:
    value = json.loads(text)
    return [str(v) for v in value]


# --- instance ------------------------------------------------------------------------------------


def lock_instance(conn: Connection) -> sa.Row[Any] | None:
    """Read the instance row, locking it on PostgreSQL so writers serialise (SQLite writers
    already hold the database lock from ``BEGIN IMMEDIATE``)."""
    return conn.execute(sa.select(instance).where(instance.c.id == 1).with_for_update()).first()


def get_instance(conn: Connection) -> sa.Row[Any] | None:
    return conn.execute(sa.select(instance).where(instance.c.id == 1)).first()


def insert_instance(conn: Connection, name: str, key_id: str, at_ms: int) -> None:
    conn.execute(
        instance.insert().values(id=1, instance=name, registry_key_id=key_id, created_at_ms=at_ms)
    )


# --- generic lookups -----------------------------------------------------------------------------


def exists(conn: Connection, table: sa.Table, key_column: str, key: str) -> bool:
    col = table.c[key_column]
    return conn.execute(sa.select(col).where(col == key)).first() is not None


def all_rows(conn: Connection, table: sa.Table, order_by: str) -> Sequence[sa.Row[Any]]:
    return conn.execute(sa.select(table).order_by(table.c[order_by])).all()


# --- servers and certificates --------------------------------------------------------------------


def get_server(conn: Connection, server_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(servers).where(servers.c.id == server_id)).first()


def record_certificate(
    conn: Connection,
    *,
    fingerprint: str,
    serial: int,
    kind: str,
    subject: str,
    not_after_ms: int,
    issued_at_ms: int,
) -> None:
    conn.execute(
        certificates.insert().values(
            fingerprint=fingerprint,
            serial=str(serial),
            kind=kind,
            subject=subject,
            not_after_ms=not_after_ms,
            issued_at_ms=issued_at_ms,
        )
    )


def revoke_certificates(
    conn: Connection, fingerprints: Sequence[str], reason: str, at_ms: int
) -> None:
    conn.execute(
        certificates.update()
        .where(certificates.c.fingerprint.in_(list(fingerprints)))
        .where(certificates.c.revoked_at_ms.is_(None))
        .values(revoked_at_ms=at_ms, revocation_reason=reason)
    )


def revoked_certificates(conn: Connection, now_ms: int) -> Sequence[Any]:
    """Revoked certificates that have not yet expired (an expired one needs no listing)."""
    return conn.execute(
        sa.select(certificates.c.fingerprint, certificates.c.serial)
        .where(certificates.c.revoked_at_ms.is_not(None))
        .where(certificates.c.not_after_ms > now_ms)
        .order_by(certificates.c.fingerprint)
    ).all()


def is_revoked(conn: Connection, fingerprint: str) -> bool:
    row = conn.execute(
        sa.select(certificates.c.revoked_at_ms).where(certificates.c.fingerprint == fingerprint)
    ).first()
    return row is not None and row.revoked_at_ms is not None


# --- trust anchors -------------------------------------------------------------------------------


def get_trust_anchors(conn: Connection) -> bytes | None:
    row = conn.execute(sa.select(trust_anchors.c.data).where(trust_anchors.c.id == 1)).first()
    return None if row is None else bytes(row.data)


def put_trust_anchors(conn: Connection, data: bytes, at_ms: int) -> None:
    updated = conn.execute(
        trust_anchors.update().where(trust_anchors.c.id == 1).values(data=data, updated_at_ms=at_ms)
    )
    if updated.rowcount == 0:
        conn.execute(trust_anchors.insert().values(id=1, data=data, updated_at_ms=at_ms))


# --- signed configurations -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredConf:
    version: int
    issued_at_ms: int
    expires_at_ms: int
    data: bytes


def latest_conf(conn: Connection) -> StoredConf | None:
    row = conn.execute(sa.select(confs).order_by(confs.c.version.desc()).limit(1)).first()
    if row is None:
        return None
    return StoredConf(row.version, row.issued_at_ms, row.expires_at_ms, bytes(row.data))


def latest_conf_version(conn: Connection) -> int:
    return int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.max(confs.c.version), 0))).scalar_one()
    )


def insert_conf(conn: Connection, conf: StoredConf) -> None:
    conn.execute(
        confs.insert().values(
            version=conf.version,
            issued_at_ms=conf.issued_at_ms,
            expires_at_ms=conf.expires_at_ms,
            data=conf.data,
        )
    )
    conn.execute(confs.delete().where(confs.c.version <= conf.version - CONF_KEEP))


# --- history -------------------------------------------------------------------------------------


def append_history(
    conn: Connection, *, at_ms: int, actor: str, action: str, target: str, detail: str
) -> None:
    conn.execute(
        history.insert().values(
            at_ms=at_ms, actor=actor, action=action, target=target, detail=detail
        )
    )


def recent_history(conn: Connection, limit: int) -> Sequence[sa.Row[Any]]:
    return conn.execute(sa.select(history).order_by(history.c.seq.desc()).limit(limit)).all()
