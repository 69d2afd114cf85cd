"""Alembic environment of the security server schema (see ``cdx.db.migrate``)."""

from cdx.db import run_alembic_env
from security_server.store import metadata

run_alembic_env(metadata)
