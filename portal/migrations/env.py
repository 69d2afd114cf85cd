"""Alembic environment of the portal schema (see ``cdx.db.migrate``)."""

from cdx.db import run_alembic_env
from portal.sessions import metadata

run_alembic_env(metadata)
