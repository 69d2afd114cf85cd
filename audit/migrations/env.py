"""Alembic environment of the audit schema (see ``cdx.db.migrate``)."""

from audit.store import metadata
from cdx.db import run_alembic_env

run_alembic_env(metadata)
