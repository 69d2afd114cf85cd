"""SQLAlchemy engines for SQLite (embedded default) and PostgreSQL, and Alembic migrations.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed row survives a power cut) and a
busy timeout; PostgreSQL goes through psycopg 3. Each component keeps its schema in its own
Alembic script directory (``<package>/migrations``) with its own version table, so the
components can share one PostgreSQL database or use one SQLite file each.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from cdx.files import FILE_MODE, make_private_dir

__all__ = [
    "create_engine",
    "display_url",
    "drop_schema",
    "error_summary",
    "is_sqlite",
    "migrate",
    "run_alembic_env",
    "sqlite_url",
    "transaction",
    "writer",
]

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _create_private_sqlite_file(url: str) -> None:
    """Create a SQLite database file mode 0600 in a 0700 directory before SQLite does (SQLite
    would use 0644); SQLite gives its ``-wal`` and ``-shm`` files the database file's mode."""
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    if os.path.exists(path):
        # An install from before files were private: tighten what it left (0644 by SQLite).
        for file in (path, f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.chmod(file, FILE_MODE)
        return
    make_private_dir(Path(path).parent)
    with contextlib.suppress(FileExistsError):  # another process created it meanwhile
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def create_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> Engine:
    """Create an engine with CDX's durability settings.

    ``schema`` (PostgreSQL only) selects a schema, created if missing, as the search path:
    tests use one schema each; production normally leaves it empty. A new SQLite file is
    created private (0600, in a 0700 directory); an existing one (and its ``-wal``/``-shm``) is
    made 0600.
    """
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None},
            poolclass=NullPool if ":memory:" not in url else None,
            hide_parameters=True,  # statement parameters may hold personal data: never in errors
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # pysqlite's own transaction handling is off (isolation_level=None). Writers (see
            # ``writer``) take the write lock up front so that concurrent writers queue on the
            # busy timeout instead of failing when a read transaction upgrades to a write.
            immediate = conn.get_execution_options().get("cdx_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    connect_args: dict[str, Any] = {}
    if schema is not None:
        if not _SCHEMA.fullmatch(schema):
            raise ValueError("invalid schema name")
        connect_args["options"] = f"-c search_path={schema}"
        bootstrap = sa.create_engine(url, poolclass=NullPool)
        with bootstrap.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        bootstrap.dispose()
    return sa.create_engine(
        url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,  # statement parameters may hold personal data: never in errors
    )


def writer(engine: Engine) -> Engine:
    """The same engine, but its transactions start as writers (SQLite ``BEGIN IMMEDIATE``).

    Use it for every read-then-write transaction; plain ``engine`` suits reads and blind writes.
    """
    return engine.execution_options(cdx_write=True)


def drop_schema(url: str, schema: str) -> None:
    """Drop a PostgreSQL schema (tests clean up after themselves)."""
    if not _SCHEMA.fullmatch(schema):
        raise ValueError("invalid schema name")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


def migrate(
    engine: Engine,
    package: str,
    *,
    revision: str = "head",
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Bring ``package``'s schema (``<package>/migrations``) up to ``revision``.

    ``attributes`` reach the migration scripts (``op.get_context().config.attributes``): keys
    a data migration needs, for example.
    """
    cfg = Config()
    cfg.set_main_option("script_location", f"{package}:migrations")
    cfg.attributes.update(attributes or {})
    cfg.attributes["engine"] = engine
    cfg.attributes["version_table"] = f"alembic_version_{package}"
    command.upgrade(cfg, revision)


def run_alembic_env(target_metadata: sa.MetaData | None = None) -> None:
    """Body of every component's ``migrations/env.py`` (online mode, engine passed in)."""
    from alembic import context

    cfg = context.config
    engine: Engine | None = cfg.attributes.get("engine")
    if engine is None:
        url = cfg.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no engine or sqlalchemy.url given to migrations")
        engine = create_engine(url)
    version_table = cfg.attributes.get("version_table", "alembic_version")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=is_sqlite(engine),
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def transaction(engine: Engine, fn: Callable[[sa.Connection], Any]) -> Any:
    """Run ``fn`` in one transaction and return its result."""
    with engine.begin() as conn:
        return fn(conn)


def display_url(url: str) -> str:
    """``url`` fit for a message: the password masked."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "(an unparsable database URL)"


def error_summary(exc: BaseException) -> str:
    """What a database error says to an operator, on one line and without statement parameters.

    A connection-level failure (``OperationalError``: server down, wrong database name, wrong
    credentials, unreadable SQLite file) keeps the driver's first line, which names the server
    and the database. Any other error gives its class only: the driver's later lines (a
    PostgreSQL ``DETAIL``) may quote row values, which may be personal data.
    """
    orig = getattr(exc, "orig", None)
    if isinstance(exc, sa.exc.OperationalError) and orig is not None:
        lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
        if lines:
            return lines[0][:300]
    return type(orig if orig is not None else exc).__name__
