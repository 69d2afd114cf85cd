"""Faults around the audit log's checkpoints: a checkpointer that stops, and witnesses that lag.

- An idle log signs nothing new; its checkpoint alert must stay quiet for hours, while entries
  left unsigned by a stalled checkpointer must raise it.
- Each inspector query grows the log and a new checkpoint waits a few seconds for its witness
  quorum; a citizen's "verified" entries must not flap to "not yet verifiable" meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from audit import monitoring
from audit.client import AuditClient
from audit.server import RunningAudit
from audit.witness import Witness
from cdx import db, records, telemetry
from cdx.clock import utcnow
from cdx.globalconf import to_ms
from cdx.v1 import audit_pb2
from portal.grpc_clients import GrpcAuditClient
from portal.reports import check_history
from portal.verify import LogTrust, Status
from tests.integration.audit_support import CITIZEN_A, CONSUMER, PROVIDER, AuditWorld

pytestmark = pytest.mark.xdist_group("fault-audit-checkpoints")


class Clock:
    """A clock the test moves (the audit service reads only this one)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Log:
    world: AuditWorld
    audit: RunningAudit
    clock: Clock
    provider: AuditClient
    inspector: AuditClient


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    world = AuditWorld(quorum=2)
    clock = Clock()
    engine = db.create_engine(db.sqlite_url(tmp_path / "audit.db"))
    audit = world.start(engine, checkpoint_interval=5.0, clock=clock)
    provider, inspector = world.client(PROVIDER), world.client(world.inspector_tls)
    try:
        yield Log(world, audit, clock, provider, inspector)
    finally:
        provider.close()
        inspector.close()
        audit.stop()


def _metric(reader: InMemoryMetricReader, name: str) -> Any:
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    return metric
    raise AssertionError(f"no {name} gauge")


def _gauge(reader: InMemoryMetricReader, name: str) -> float:
    (point,) = _metric(reader, name).data.data_points
    return float(point.value)


def test_an_idle_log_raises_no_checkpoint_alert_but_a_stalled_checkpointer_does(log: Log) -> None:
    """Regression: the checkpoint-age gauge was the age of the latest checkpoint, so every idle
    instance alarmed. It is now how long the oldest unsigned entry has waited."""
    reader = InMemoryMetricReader()
    telemetry.configure(component="audit", metric_readers=[reader])
    stop = monitoring.observe(log.audit, clock=log.clock)
    try:
        log.provider.ship(log.world.exchange()[1:])
        log.audit.checkpointer.publish_once()
        # Nothing happens for 50 minutes (the test's global configuration is valid for an hour).
        log.clock.now += timedelta(minutes=50)
        assert _gauge(reader, "cdx.audit.checkpoint_age") == 0.0
        # What an operator reads beside the number (Prometheus HELP) says what it measures.
        description = _metric(reader, "cdx.audit.checkpoint_age").description
        assert description.startswith("how long the audit log's oldest committed entry")
        assert monitoring.unsigned_age_s(log.audit.store, to_ms(log.clock.now)) == 0.0
        log.audit.checkpointer.stop()  # the fault: checkpoints stop while appends go on
        log.provider.ship(log.world.exchange()[1:])
        log.clock.now += timedelta(seconds=45)
        assert _gauge(reader, "cdx.audit.checkpoint_age") == pytest.approx(45.0, abs=0.01)
        log.audit.checkpointer.publish_once()  # signed again: the alert clears
        assert _gauge(reader, "cdx.audit.checkpoint_age") == 0.0
    finally:
        stop()
        telemetry.reset()


def _provided(world: AuditWorld) -> audit_pb2.OutboxItem:
    """The provider's record of an access to a service it hosts (``AuditWorld`` registers
    ``<member>:sub`` for each server), so the portal can check it fully."""
    item = world.item(PROVIDER, CITIZEN_A)
    record = audit_pb2.AccessRecord.FromString(item.record.record)
    record.service = "VN:GOV:BCA:sub/person/v1"
    item.record.CopyFrom(records.sign_access_record(record, world.servers[PROVIDER].signer))
    return item


def _witnesses(log: Log, tmp_path: Path) -> list[Witness]:
    return [
        Witness(
            sid,
            log.world.servers[sid].witness_key,
            log.world.client(sid),
            log.world.conf,
            tmp_path / f"{sid}.json",
            clock=log.clock,
        )
        for sid in (CONSUMER, PROVIDER)
    ]


def test_verified_entries_stay_verified_while_a_new_checkpoint_awaits_its_witnesses(
    log: Log, tmp_path: Path
) -> None:
    """Regression: the citizen's history was proven against the latest checkpoint, which has no
    cosignatures for its first seconds; every inspector query grows the log, so "verified"
    flapped to "not yet verifiable". Proofs are now against the newest cosigned checkpoint."""
    witnesses = _witnesses(log, tmp_path)
    portal = GrpcAuditClient(lambda: log.world.audit_address, log.world.portal_tls)
    trust = LogTrust.from_conf(log.world.conf())
    try:
        assert not log.provider.ship([_provided(log.world)])[0].error_code
        log.audit.checkpointer.publish_once()
        for w in witnesses:
            w.poll_once()

        def statuses() -> dict[str, Status]:
            history = portal.citizen_history(log.world.token(CITIZEN_A), 100)
            checked = check_history(history, trust, CITIZEN_A)
            return {r.access.record_id: r.status for row in checked.rows for r in row.records}

        first = statuses()
        assert first and set(first.values()) == {Status.VERIFIED}
        # An inspector looks (the query is indexed under the citizen) and the log signs a new
        # checkpoint before any witness saw it: what was verified stays verified.
        log.inspector.search(
            audit_pb2.SearchRequest(subject=CITIZEN_A, reason="complaint 2025/17 review")
        )
        log.audit.checkpointer.publish_once()
        second = statuses()
        assert {k: second[k] for k in first} == first
        (query,) = set(second) - set(first)
        assert second[query] == Status.PENDING  # the new entry waits for its witnesses
        for w in witnesses:
            w.poll_once()
        assert set(statuses().values()) == {Status.VERIFIED}
    finally:
        portal.close()
        for w in witnesses:
            w.stop()
