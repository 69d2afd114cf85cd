"""Consent schema: terms and artefacts sealed at rest (they name the citizen).

Seals ``consents.terms`` and ``consents.artefact`` of every row written before this revision
under the consent data key (``consent.sealing``), in place, in batches. The keys come from the
consent service (``consent.server.migrate_consent_db`` passes them as the Alembic attribute
``consent_data_keys``); a database with rows to seal refuses to migrate without them.

Old values must not survive in the database files either. On SQLite ``VACUUM`` rebuilds the
file (no freed page keeps an old value) and a ``TRUNCATE`` checkpoint writes the write-ahead
log back and empties it, even while another connection holds the database open. On
PostgreSQL ``VACUUM FULL consents`` rewrites the table into new files without the dead row
versions, once no session of the database can still see them (it waits for sessions older
than the rewrite, up to ``HORIZON_WAIT_S``, then warns; SQLite's checkpoint likewise waits
for older readers, up to the busy timeout). Backups, and PostgreSQL's own WAL archive, keep
the old values until they age out (docs/operations.md).

Revision ID: consent_0003
Revises: consent_0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from consent.sealing import ARTEFACT, MIGRATION_ATTRIBUTE, TERMS, DataKeys, is_sealed

revision = "consent_0003"
down_revision = "consent_0002"
branch_labels = None
depends_on = None

BATCH = 500
#: PostgreSQL keeps a dead row version while any transaction that may still see it runs (and
#: ``VACUUM FULL`` copies such versions into the new files): wait this long for them to end.
HORIZON_WAIT_S = 120.0

log = logging.getLogger(__name__)

# Sessions of this database whose snapshot or transaction began before the rewrite committed.
_OLDER_SESSIONS = sa.text(
    """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND (age(backend_xmin) >= age(CAST(:xid AS xid))
           OR age(backend_xid) >= age(CAST(:xid AS xid)))
    """
)

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


def _wait_for_older_sessions(xid: str) -> None:
    deadline = time.monotonic() + HORIZON_WAIT_S
    while op.get_bind().execute(_OLDER_SESSIONS, {"xid": xid}).scalar():
        if time.monotonic() > deadline:
            log.warning(
                "consent_0003: transactions older than the rewrite are still open, so old "
                "row versions of consents may survive; run VACUUM FULL consents once they end"
            )
            return
        time.sleep(0.2)


def _scrub() -> None:
    """Leave no freed copy of the old values in the database files."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    xid = None if sqlite else str(bind.execute(sa.text("SELECT txid_current() % 4294967296")).scalar())
    with op.get_context().autocommit_block():  # commits the rewrite first
        if xid is None:
            # CDX's SQLite engines open every transaction themselves (``cdx.db``), even in
            # autocommit mode: end that one, since VACUUM cannot run inside a transaction.
            op.execute("COMMIT")
            op.execute("VACUUM")
            op.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            _wait_for_older_sessions(xid)
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
