"""Alembic migrations build exactly the audit schema ``audit.store`` declares, on SQLite and
PostgreSQL, with every append-only table refusing updates and deletes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from audit import store
from cdx import db

VERSION_TABLE = "alembic_version_audit"


@pytest.fixture
def engine(db_url_factory: object) -> Iterator[Engine]:
    url, schema = db_url_factory("audit_migrations")  # type: ignore[operator]
    engine = db.create_engine(url, schema=schema)
    yield engine
    engine.dispose()


def test_migrations_create_the_declared_schema(engine: Engine) -> None:
    db.migrate(engine, "audit")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert list(compare_metadata(context, store.metadata)) == []
    db.migrate(engine, "audit")  # running again is a no-op


def test_refusals_are_append_only_right_after_migration(engine: Engine) -> None:
    db.migrate(engine, "audit")
    audit_store = store.AuditStore(engine)
    audit_store.insert_refused([("VN:GOV:A:ss", "-", "malformed")], 1)
    audit_store.insert_refused([("VN:GOV:A:ss", "-", "malformed")], 2)  # kept once
    assert [(r.code, r.refused_at_ms) for r in audit_store.list_refused(0, 10)] == [
        ("malformed", 1)
    ]
    for statement in ("UPDATE audit_refused SET code = 'x'", "DELETE FROM audit_refused"):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text(statement))
    audit_store.close()
