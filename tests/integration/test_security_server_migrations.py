"""Alembic migrations build exactly the security-server schema ``security_server.store``
declares, on SQLite and PostgreSQL; an outbox of the first schema upgrades with its records
(the dead-letter table arrives empty and every record is still queued)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from cdx import db
from security_server import deadletters, store
from security_server.outbox import summary

VERSION_TABLE = "alembic_version_security_server"


@pytest.fixture
def engine(db_url_factory: object) -> Iterator[Engine]:
    url, schema = db_url_factory("ss_migrations")  # type: ignore[operator]
    engine = db.create_engine(url, schema=schema)
    yield engine
    engine.dispose()


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(context, store.metadata))


def test_migrations_create_the_declared_schema(engine: Engine) -> None:
    db.migrate(engine, "security_server")
    assert _schema_diff(engine) == []
    db.migrate(engine, "security_server")  # running again is a no-op
    with engine.connect() as conn:
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        assert list(versions) == ["security_server_0002"]


def test_an_outbox_of_the_first_schema_upgrades_with_its_records(engine: Engine) -> None:
    db.migrate(engine, "security_server", revision="security_server_0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ss_outbox (record_id, created_ms, signed_record, attempts) "
                "VALUES ('r-1', 1000, :b, 7), ('r-2', 2000, :b, 0)"
            ),
            {"b": b"signed"},
        )
    db.migrate(engine, "security_server")
    assert _schema_diff(engine) == []
    found = summary(engine)
    assert (found.records, found.queued, found.oldest_queued_ms, found.dead_letters) == (
        2,
        2,
        1000,
        0,
    )
    assert deadletters.list_dead_letters(engine) == []
