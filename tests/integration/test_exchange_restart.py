"""A provider restarted mid-run loses no access record, shipped or not.

Every answer a consumer received names the provider's record (``provider_record_id``); that
record was committed before the answer left, so it must be in the provider's outbox after any
restart, and shipped to the audit log once a shipper can reach it.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdx import db, errors
from cdx.v1 import audit_pb2
from security_server.backends.sample import CITIZENS
from security_server.config import SecurityServerConfig
from security_server.store import outbox as outbox_table
from tests.faults.processes import spawn_security_server
from tests.integration.exchange_harness import ExchangeInstance, build_instance
from tests.waiting import eventually

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


class Shipper:
    """Audit shipper double: unreachable until ``reachable`` is set; collects what it ships."""

    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable
        self.lock = threading.Lock()
        self.shipped: dict[str, audit_pb2.OutboxItem] = {}

    def ship(self, items: Sequence[audit_pb2.OutboxItem]) -> list[audit_pb2.AppendResult]:
        if not self.reachable:
            raise errors.UnavailableError("audit log unreachable")
        results = []
        with self.lock:
            for index, item in enumerate(items):
                rid = item.opening.record_id
                duplicate = rid in self.shipped
                self.shipped[rid] = item
                results.append(
                    audit_pb2.AppendResult(record_id=rid, index=index, duplicate=duplicate)
                )
        return results


class Load:
    """Queries social -> population in a loop on a few threads, remembering every answer."""

    def __init__(self, instance: ExchangeInstance, threads: int = 4) -> None:
        self.instance = instance
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answered: list[str] = []  # provider record ids of answers received
        self.failed: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        social, population = self.instance.agency("social"), self.instance.agency("population")
        while not self.stop.is_set():
            try:
                r = social.query(population.service, ANNE.id, BENEFIT, timeout=5)
            except errors.CdxError as exc:
                with self.lock:
                    self.failed.append(exc.code)
                self.stop.wait(0.01)  # pace the retries
                continue
            with self.lock:
                self.answered.append(r.provider_record_id)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        def enough() -> bool:
            with self.lock:
                return len(self.answered) >= count

        eventually(enough, timeout=timeout, what=f"{count} answers (failures: {self.failed[-5:]})")

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _record_ids(config: SecurityServerConfig) -> dict[str, bool]:
    """record id -> shipped, read straight from the provider's database."""
    engine = db.create_engine(config.db_url, schema=config.database_schema)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(outbox_table.c.record_id, outbox_table.c.shipped_ms))
            return {r.record_id: r.shipped_ms is not None for r in rows}
    finally:
        engine.dispose()


@pytest.fixture
def instance(
    tmp_path: Path, db_url_factory: Callable[[str], tuple[str, str | None]]
) -> Iterator[ExchangeInstance]:
    inst = build_instance(
        tmp_path,
        audit_shippers={"population": Shipper(reachable=False)},
        database=db_url_factory,
    )
    yield inst
    inst.close()


def test_restart_mid_run_loses_no_record_and_ships_the_backlog(
    instance: ExchangeInstance,
) -> None:
    population = instance.agency("population")
    with Load(instance) as load:
        load.wait_for(15)
        population.stop()  # while queries are in flight
        with load.lock:
            failed = len(load.failed)
        eventually(lambda: len(load.failed) > failed, what="queries refused while it is down")
        working = Shipper(reachable=True)
        population.audit_shipper = working
        population.start()
        with load.lock:
            before = len(load.answered)
        load.wait_for(before + 15)
    outbox = population.running.outbox
    eventually(lambda: outbox.depth() == 0, what="the backlog shipped")
    stored = _record_ids(population.config)
    # Every answer's record survived the restart, and everything stored reached the log.
    assert set(load.answered) <= set(stored)
    assert set(stored) <= set(working.shipped)
    assert all(stored.values())
    # Openings travelled with their records (the log needs them for the citizen's view).
    for rid in load.answered:
        assert working.shipped[rid].opening.subject == ANNE.id


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_provider_killed_with_sigkill_keeps_every_acknowledged_record(
    instance: ExchangeInstance,
) -> None:
    """The provider runs as a ``cdx security-server serve`` process that is SIGKILLed."""
    population = instance.agency("population")
    population.stop()
    proc = spawn_security_server(population)  # on the port it had in this process
    try:
        with Load(instance) as load:
            load.wait_for(20)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            with load.lock:
                acknowledged = list(load.answered)
            proc = spawn_security_server(population)
            load.wait_for(len(acknowledged) + 10)
        stored = _record_ids(population.config)
        assert set(acknowledged) <= set(stored)
    finally:
        proc.kill()
        proc.wait(10)
