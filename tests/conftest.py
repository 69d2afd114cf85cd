"""Shared fixtures: database URLs for SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdx import db

POSTGRES_ENV = "CDX_TEST_POSTGRES_URL"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both databases; the PostgreSQL run skips when unconfigured."""
    if request.param == "postgres" and not postgres_url():
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV} to run this test on it")
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
        return str(postgres_url()), schema

    yield make
    url = postgres_url()
    for schema in schemas:
        if url:
            db.drop_schema(url, schema)


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
