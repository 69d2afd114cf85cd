"""Alembic environment of the notification schema (see ``cdx.db.migrate``)."""

from cdx.db import run_alembic_env
from notify.store import metadata

run_alembic_env(metadata)
