"""Shared fixtures: databases (SQLite, PostgreSQL), and what the suite needs to be honest.

PostgreSQL: the server ``CDX_TEST_POSTGRES_URL`` names; without it, a throwaway cluster this
test process starts from the installed server binaries (``tests/postgres.py``, one per pytest
worker, removed at the end of the run); only where neither exists do PostgreSQL tests skip.

A test that cannot run because a piece of the test infrastructure is missing (PostgreSQL,
Chromium, the conformance vectors in ``../shared/conformance``) skips through
``skip_missing``. Under ``CI=true`` such a skip is reported as a failure instead
(``pytest_runtest_makereport``): CI is never green because the suite did not run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from cdx import db

POSTGRES_ENV = "CDX_TEST_POSTGRES_URL"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Every skip for missing test infrastructure says this (and fails under CI=true).
MISSING = "missing test infrastructure: "

#: A database: SQLAlchemy URL (``None``: a SQLite file of the test) and PostgreSQL schema.
Database = tuple[str | None, str | None]


def in_ci() -> bool:
    """Whether this run is CI (``CI=true``, as CI services set it): nothing may be missing."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_missing(what: str, how: str) -> NoReturn:
    """Skip the current test because ``what`` is missing (``how`` to get it); a failure in CI."""
    pytest.skip(f"{MISSING}{what} ({how})")


def missing_mark(what: str, how: str) -> pytest.MarkDecorator:
    """``skip_missing`` as a mark, for a test that cannot be collected meaningfully."""
    return pytest.mark.skip(reason=f"{MISSING}{what} ({how})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and in_ci() and MISSING in str(report.longrepr):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        report.outcome = "failed"
        report.longrepr = f"CI=true, so this is a failure, not a skip: {reason}"


# --- PostgreSQL ----------------------------------------------------------------------------------

_local_lock = threading.Lock()
_local: dict[str, object] = {}


def postgres_url() -> str | None:
    """The PostgreSQL server of this test run: ``$CDX_TEST_POSTGRES_URL``, else a throwaway
    cluster started on first use (``None`` when neither can be had; see ``require_postgres``)."""
    configured = os.environ.get(POSTGRES_ENV)
    if configured:
        return configured
    from tests.postgres import LocalPostgres, unavailable_reason

    with _local_lock:
        if "server" in _local:
            return str(_local["server"].url)  # type: ignore[attr-defined]
        if "error" in _local:
            return None
        reason = unavailable_reason()
        if reason is not None:
            _local["error"] = reason
            return None
        try:
            server = LocalPostgres.create()
        except RuntimeError as exc:
            _local["error"] = f"the throwaway PostgreSQL did not start: {exc}"
            return None
        _local["server"] = server
        atexit.register(server.destroy)
        return server.url


def require_postgres() -> str:
    """``postgres_url()``, or skip (a failure under CI=true) saying why there is none."""
    url = postgres_url()
    if url is None:
        skip_missing(
            "PostgreSQL",
            f"set {POSTGRES_ENV}, or install the server binaries for a throwaway cluster; "
            f"{_local.get('error', '')}",
        )
    return url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    server = _local.pop("server", None)
    if server is not None:
        server.destroy()  # type: ignore[attr-defined]


@contextlib.contextmanager
def database(backend: str, prefix: str) -> Iterator[Database]:
    """``(None, None)`` for SQLite; for PostgreSQL a new schema (dropped afterwards)."""
    if backend == "sqlite":
        yield None, None
        return
    url = require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield url, schema
    finally:
        db.drop_schema(url, schema)


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both databases."""
    if request.param == "postgres":
        require_postgres()
    return str(request.param)


@pytest.fixture
def db_url_factory(tmp_path: Path, db_backend: str) -> Iterator[object]:
    """Returns ``make(name) -> (url, schema)``: a fresh database per name on the backend."""
    schemas: list[str] = []

    def make(name: str) -> tuple[str, str | None]:
        if db_backend == "sqlite":
            return db.sqlite_url(tmp_path / f"{name}.db"), None
        schema = f"t_{name}_{uuid.uuid4().hex[:10]}"
        schemas.append(schema)
        return require_postgres(), schema

    yield make
    for schema in schemas:
        db.drop_schema(require_postgres(), schema)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Stable test ids for generated values (keys, certificates, random bytes).

    pytest-xdist requires every worker to collect the same ids; an id derived from random
    bytes would differ between workers. Long or binary values get the argument name (pytest
    numbers duplicates deterministically); short readable ones keep pytest's default.
    """
    if isinstance(val, bytes | bytearray) and (len(val) > 24 or not bytes(val).isascii()):
        return argname
    if isinstance(val, str) and len(val) > 48:
        return argname
    return None
