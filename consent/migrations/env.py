"""Alembic environment of the consent schema (see ``cdx.db.migrate``)."""

from cdx.db import run_alembic_env
from consent.store import metadata

run_alembic_env(metadata)
