"""Crashes under load: a security server SIGKILLed mid-traffic, and PostgreSQL restarted under
load. Afterwards no record a server committed is missing from the audit log, none is there
twice, and ``cdx audit verify`` passes.

(The same SIGKILL without an audit log, checking the outbox alone, is
``tests/integration/test_exchange_restart.py``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdx import db
from security_server.backends.sample import CITIZENS
from security_server.config import dump_config
from security_server.store import outbox as outbox_table
from tests.conftest import postgres_url
from tests.integration.exchange_harness import build_instance

from .audit_log import AuditLog, attach_audit_log
from .processes import spawn
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
    deadline = time.monotonic() + timeout
    while True:
        rows = _outbox_rows(url, schema)
        if all(rows.values()):
            return rows
        assert time.monotonic() < deadline, "the outbox did not drain"
        time.sleep(0.2)


def _assert_all_logged_once(log: AuditLog, record_ids: set[str]) -> None:
    logged = log.wait_logged(record_ids)
    assert len(logged) == len(set(logged)), "a record was logged twice"
    result = log.verify()
    assert result.returncode == 0, result.stdout + result.stderr


def _spawn_server(config_path: Path) -> subprocess.Popen[str]:
    return spawn(["security-server", "serve", "--config", str(config_path)], "exchange")


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
        config_path = population.data_dir / "server.toml"
        config_path.write_text(dump_config(population.config), encoding="utf-8")
        proc = _spawn_server(config_path)
        with Traffic(lambda: social.query(population.service, ANNE.id, BENEFIT, timeout=5)) as t:
            t.wait_answers(20)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            with t.lock:
                acknowledged = set(t.accepted)
            proc = _spawn_server(config_path)
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


class PrivatePostgres:
    """A PostgreSQL server of this test's own (initdb in a temporary directory, its own port).

    Restarting the shared server would break PostgreSQL tests running on the other worker at
    the same moment; a private server can be restarted freely.
    """

    def __init__(self, bindir: Path, as_user: list[str], datadir: Path, port: int) -> None:
        self.bindir, self.as_user, self.datadir, self.port = bindir, as_user, datadir, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1"
        self._ctl("-o", options, "-l", str(self.datadir / "server.log"), "-w", "start")

    def restart(self) -> None:
        # stop + start rather than `pg_ctl restart`, so the new server gets its log file and
        # does not inherit (and hold open) this process's pipes.
        self._ctl("-m", "fast", "-w", "stop")
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._ctl("-m", "immediate", "-w", "stop")

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            engine = sa.create_engine(
                self.url.replace("postgresql://", "postgresql+psycopg://", 1),
                poolclass=sa.pool.NullPool,
            )
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                return
            except sa.exc.OperationalError:
                assert time.monotonic() < deadline, "PostgreSQL did not come back"
                time.sleep(0.3)
            finally:
                engine.dispose()


def _postgres_bindir() -> Path | None:
    base = Path("/usr/lib/postgresql")
    if not base.is_dir():
        return None
    for version in sorted(base.iterdir(), reverse=True):
        if (version / "bin" / "initdb").exists():
            return version / "bin"
    return None


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not postgres_url():
        pytest.skip("PostgreSQL not configured: set CDX_TEST_POSTGRES_URL to run this test on it")
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("needs the PostgreSQL server binaries (initdb, pg_ctl) to run a private server")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start a private PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    import tempfile

    from stack.provision import free_port

    datadir = Path(tempfile.mkdtemp(prefix="cdx-pg-"))
    if as_user:
        shutil.chown(datadir, "postgres", "postgres")
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres",
         "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    server = PrivatePostgres(bindir, as_user, datadir, free_port())
    try:
        server.start()
        server.wait()
        yield server
    finally:
        server.stop()
        shutil.rmtree(datadir, ignore_errors=True)


def test_postgres_restarted_under_load_loses_no_accepted_record(
    private_postgres: PrivatePostgres, tmp_path: Path
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
            private_postgres.wait()
            t.wait_answers(20, timeout=60)  # the servers reconnect on their own
        # Nothing committed is lost; what failed during the restart was refused, not released.
        deadline = time.monotonic() + 60
        while any(a.running.outbox.depth() for a in instance.agencies.values()):
            assert time.monotonic() < deadline, "an outbox did not drain after the restart"
            time.sleep(0.2)
        stored = {r.record_id for a in instance.agencies.values() for r in a.records_since(0)}
        assert set(t.accepted) <= stored
        _assert_all_logged_once(log, stored)
    finally:
        instance.close()
        log.close()
        for schema in (*schemas.values(), audit_schema):
            with contextlib.suppress(Exception):
                db.drop_schema(url, schema)
