"""Alembic migrations build exactly the registry schema that registry.store declares, on SQLite
and PostgreSQL, and can be rolled back and re-applied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from cdx import db
from registry import store

VERSION_TABLE = "alembic_version_registry"


@pytest.fixture
def engine(db_url_factory: object) -> Iterator[Engine]:
    url, schema = db_url_factory("registry_migrations")  # type: ignore[operator]
    engine = db.create_engine(url, schema=schema)
    yield engine
    engine.dispose()


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(context, store.metadata))


def test_migrations_create_the_declared_schema(engine: Engine) -> None:
    db.migrate(engine, "registry")
    tables = set(sa.inspect(engine).get_table_names())
    assert set(store.metadata.tables) | {VERSION_TABLE} <= tables
    assert _schema_diff(engine) == []
    db.migrate(engine, "registry")  # running again is a no-op
    with engine.connect() as conn:
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    assert versions == ["registry_0001"]


def test_history_rejects_update_and_delete_right_after_migration(engine: Engine) -> None:
    db.migrate(engine, "registry")
    with engine.begin() as conn:
        store.append_history(conn, at_ms=1, actor="a", action="x", target="t", detail="{}")
    for statement in ("UPDATE registry_history SET actor = 'b'", "DELETE FROM registry_history"):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text(statement))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT actor FROM registry_history")).scalars().all() == ["a"]


def test_downgrade_removes_the_schema_and_upgrade_restores_it(engine: Engine) -> None:
    db.migrate(engine, "registry")
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "registry:migrations")
    cfg.attributes["engine"] = engine
    cfg.attributes["version_table"] = VERSION_TABLE
    command.downgrade(cfg, "base")
    assert not set(store.metadata.tables) & set(sa.inspect(engine).get_table_names())
    db.migrate(engine, "registry")
    assert _schema_diff(engine) == []
