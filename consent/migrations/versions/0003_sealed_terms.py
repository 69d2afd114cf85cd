"""Consent schema: terms and artefacts sealed at rest (they name the citizen).

Seals ``consents.terms`` and ``consents.artefact`` of every row written before this revision
under the consent data key (``consent.sealing``), in place, in batches. The keys come from the
consent service (``consent.server.migrate_consent_db`` passes them as the Alembic attribute
``consent_data_keys``); a database with rows to seal refuses to migrate without them.

Old values must not survive in the database files either. On SQLite ``VACUUM`` rebuilds the
file (no freed page keeps an old value) and a ``TRUNCATE`` checkpoint writes the write-ahead
log back and empties it, even while another connection holds the database open. On
PostgreSQL ``VACUUM FULL consents`` rewrites the table into new files (the dead row versions
are not copied). Backups, and PostgreSQL's own WAL archive, keep the old values until they
age out (docs/operations.md).

Revision ID: consent_0003
Revises: consent_0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from consent.sealing import ARTEFACT, MIGRATION_ATTRIBUTE, TERMS, DataKeys, is_sealed

revision = "consent_0003"
down_revision = "consent_0002"
branch_labels = None
depends_on = None

BATCH = 500

_consents = sa.table(
    "consents",
    sa.column("id", sa.String),
    sa.column("terms", sa.Text),
    sa.column("artefact", sa.Text),
)


def _keys() -> DataKeys | None:
    config = op.get_context().config
    keys = config.attributes.get(MIGRATION_ATTRIBUTE) if config is not None else None
    return keys if isinstance(keys, DataKeys) else None


def _rewrite(convert: Callable[[str, str, str], str | None]) -> int:
    """Apply ``convert(consent_id, column, value)`` to every stored terms and artefact value
    (``None``: leave it); returns how many rows changed."""
    bind = op.get_bind()
    changed = 0
    after = ""
    while True:
        rows = bind.execute(
            sa.select(_consents.c.id, _consents.c.terms, _consents.c.artefact)
            .where(_consents.c.id > after)
            .order_by(_consents.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return changed
        for row in rows:
            values: dict[str, str] = {}
            for column, value in ((TERMS, row.terms), (ARTEFACT, row.artefact)):
                if value:
                    new = convert(row.id, column, value)
                    if new is not None:
                        values[column] = new
            if values:
                bind.execute(_consents.update().where(_consents.c.id == row.id).values(**values))
                changed += 1
        after = rows[-1].id


def _scrub() -> None:
    """Leave no freed copy of the old values in the database files."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.get_context().autocommit_block():  # commits the rewrite first
        if sqlite:
            # CDX's SQLite engines open every transaction themselves (``cdx.db``), even in
            # autocommit mode: end that one, since VACUUM cannot run inside a transaction.
            op.execute("COMMIT")
            op.execute("VACUUM")
            op.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            op.execute("VACUUM FULL consents")


def upgrade() -> None:
    keys = _keys()

    def seal(consent_id: str, column: str, value: str) -> str | None:
        if is_sealed(value):
            return None
        if keys is None:
            raise RuntimeError(
                "consent_0003 seals the stored consents and needs the consent data key: "
                "start the consent service (`cdx consent serve`) to migrate this database"
            )
        return keys.seal(consent_id, column, value)

    if _rewrite(seal):
        _scrub()


def downgrade() -> None:
    keys = _keys()

    def unseal(consent_id: str, column: str, value: str) -> str | None:
        if not is_sealed(value):
            return None
        if keys is None:
            raise RuntimeError("downgrading consent_0003 needs the consent data key")
        return keys.open(consent_id, column, value)

    _rewrite(unseal)
