"""Alembic environment of the registry schema (see ``cdx.db.migrate``)."""

from cdx.db import run_alembic_env
from registry.store import metadata

run_alembic_env(metadata)
