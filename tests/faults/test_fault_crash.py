"""Crashes under load: a security server SIGKILLed mid-traffic, and PostgreSQL restarted under
load. Afterwards no record a server committed is missing from the audit log, none is there
twice, and ``cdx audit verify`` passes.

(The same SIGKILL without an audit log, checking the outbox alone, is
``tests/integration/test_exchange_restart.py``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdx import db
from security_server.backends.sample import CITIZENS
from security_server.store import outbox as outbox_table
from tests.conftest import skip_missing
from tests.integration.exchange_harness import build_instance
from tests.postgres import LocalPostgres, unavailable_reason
from tests.waiting import eventually

from .audit_log import AuditLog, attach_audit_log
from .processes import spawn_security_server
from .traffic import Traffic

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


def _outbox_rows(url: str, schema: str | None = None) -> dict[str, bool]:
    """record id -> shipped, read straight from a server's database."""
    engine = db.create_engine(url, schema=schema)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(outbox_table.c.record_id, outbox_table.c.shipped_ms))
            return {r.record_id: r.shipped_ms is not None for r in rows}
    finally:
        engine.dispose()


def _wait_shipped(url: str, schema: str | None = None, timeout: float = 30.0) -> dict[str, bool]:
    def drained() -> dict[str, bool] | None:
        rows = _outbox_rows(url, schema)
        return rows if all(rows.values()) else None

    return eventually(drained, timeout=timeout, interval=0.2, what="the outbox drained")


def _assert_all_logged_once(log: AuditLog, record_ids: set[str]) -> None:
    logged = log.wait_logged(record_ids)
    assert len(logged) == len(set(logged)), "a record was logged twice"
    result = log.verify()
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_security_server_sigkilled_mid_traffic_loses_no_record_and_logs_none_twice(
    tmp_path: Path,
) -> None:
    instance = build_instance(tmp_path, start=False)
    log = attach_audit_log(instance, tmp_path)
    social, population = instance.agency("social"), instance.agency("population")
    proc: subprocess.Popen[str] | None = None
    try:
        log.start()
        for key, agency in instance.agencies.items():
            if key != "population":
                agency.start()
        # The provider runs as `cdx security-server serve`, shipping to the log global
        # configuration names.
        proc = spawn_security_server(population)
        with Traffic(lambda: social.query(population.service, ANNE.id, BENEFIT, timeout=5)) as t:
            t.wait_answers(20)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            with t.lock:
                acknowledged = set(t.accepted)
            proc = spawn_security_server(population)  # on the port it had
            t.wait_answers(10)
        provider_rows = _wait_shipped(population.config.db_url)
        # Every answer's provider record survived the kill (it committed before release).
        assert {rid for rid in acknowledged if rid in provider_rows} == {
            rid for rid in acknowledged if not _is_consumer_record(social, rid)
        }
        consumer_ids = {r.record_id for r in social.records_since(0)}
        _assert_all_logged_once(log, set(provider_rows) | consumer_ids | set(t.accepted))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        instance.close()
        log.close()


def _is_consumer_record(consumer, record_id: str) -> bool:  # type: ignore[no-untyped-def]
    return consumer.running.outbox.get(record_id) is not None


# --- PostgreSQL restarted under load ------------------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server of this test's own: restarting the one the rest of the suite uses
    would break PostgreSQL tests running on the other worker at the same moment."""
    reason = unavailable_reason()
    if reason is not None:
        skip_missing("a private PostgreSQL server", reason)
    server = LocalPostgres.create()
    try:
        yield server
    finally:
        server.destroy()


def test_postgres_restarted_under_load_loses_no_accepted_record(
    private_postgres: LocalPostgres, tmp_path: Path
) -> None:
    url = private_postgres.url
    tag = uuid.uuid4().hex[:8]
    schemas = {key: f"t_fault_pg_{key}_{tag}" for key in ("population", "social", "tax")}
    audit_schema = f"t_fault_pg_audit_{tag}"

    def configure(key: str, config):  # type: ignore[no-untyped-def]
        return dataclasses.replace(config, database_url=url, database_schema=schemas[key])

    instance = build_instance(tmp_path, start=False, configure=configure)
    log = attach_audit_log(instance, tmp_path, db_url=url, schema=audit_schema)
    social, population = instance.agency("social"), instance.agency("population")
    try:
        log.start()
        for agency in instance.agencies.values():
            agency.start()
        with Traffic(lambda: social.query(population.service, ANNE.id, BENEFIT, timeout=5)) as t:
            t.wait_answers(20)
            private_postgres.restart()
            t.wait_answers(20, timeout=60)  # the servers reconnect on their own
        # Nothing committed is lost; what failed during the restart was refused, not released.
        eventually(
            lambda: not any(a.running.outbox.depth() for a in instance.agencies.values()),
            timeout=60,
            what="every outbox drained after the restart",
        )
        stored = {r.record_id for a in instance.agencies.values() for r in a.records_since(0)}
        assert set(t.accepted) <= stored
        _assert_all_logged_once(log, stored)
    finally:
        instance.close()
        log.close()
        for schema in (*schemas.values(), audit_schema):
            with contextlib.suppress(Exception):
                db.drop_schema(url, schema)
