"""Faults of the audit log: down during traffic, and its process killed mid-commit.

After each, ``cdx audit verify`` passes and no accepted record is missing from the log.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdx import errors
from cdx.v1 import common_pb2
from security_server.backends.sample import CITIZENS
from tests.integration.exchange_harness import ExchangeInstance, build_instance
from tests.waiting import eventually

from .audit_log import AuditLog, attach_audit_log
from .traffic import Traffic

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"
WINDOW_S = 2.0


@pytest.fixture
def world(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ExchangeInstance, AuditLog]]:
    """An instance whose servers ship to an audit log; the outbox window is ``WINDOW_S`` unless
    the test passes another (``indirect`` parametrisation)."""
    window = getattr(request, "param", WINDOW_S)
    instance = build_instance(
        tmp_path,
        start=False,
        configure=lambda key, config: dataclasses.replace(config, outbox_window_s=window),
    )
    log = attach_audit_log(instance, tmp_path)
    try:
        yield instance, log
    finally:
        instance.close()
        log.close()


def _outboxes_drained(instance: ExchangeInstance, timeout: float = 30.0) -> None:
    eventually(
        lambda: not any(a.running.outbox.depth() for a in instance.agencies.values()),
        timeout=timeout,
        interval=0.1,
        what="every outbox drained",
    )


def _all_outbox_record_ids(instance: ExchangeInstance) -> set[str]:
    return {r.record_id for agency in instance.agencies.values() for r in agency.records_since(0)}


def _assert_verifies(log: AuditLog) -> None:
    result = log.verify()
    assert result.returncode == 0, result.stdout + result.stderr


def test_audit_log_down_exchanges_continue_within_the_window_then_stop(
    world: tuple[ExchangeInstance, AuditLog],
) -> None:
    instance, log = world
    log.start()
    for agency in instance.agencies.values():
        agency.start()
    social, population = instance.agency("social"), instance.agency("population")
    answered = [social.query(population.service, ANNE.id, BENEFIT)]
    log.wait_logged([answered[0].record_id, answered[0].provider_record_id])

    log.stop()
    stopped = time.monotonic()
    answered.append(social.query(population.service, ANNE.id, BENEFIT))  # within the window
    marks = (social.mark(), population.mark())
    calls = population.backend.servicer.calls

    def refused() -> bool:
        nonlocal marks, calls
        marks, calls = (social.mark(), population.mark()), population.backend.servicer.calls
        try:
            answered.append(social.query(population.service, ANNE.id, BENEFIT))
        except errors.OutboxBacklogError:
            return True
        return False

    eventually(
        refused,
        timeout=WINDOW_S + 10,
        interval=0.1,
        # A query that times out (a loaded machine) shows neither release nor refusal.
        retry_on=(errors.DeadlineExceededError, errors.BackendUnavailableError),
        what="release stopped (log down)",
    )
    refused_after = time.monotonic() - stopped
    # It kept serving for the window, then stopped (fail closed) with a recorded denial: the
    # consumer and the provider each refuse once their own records are older than the window.
    assert refused_after >= WINDOW_S - 0.5, refused_after
    recorded = social.records_since(marks[0]) + population.records_since(marks[1])
    assert {r.reason_code for r in recorded} == {"audit_backlog"}
    assert all(r.decision == common_pb2.DENY and not r.released_fields for r in recorded)
    assert population.backend.servicer.calls == calls

    log.start()
    accepted = [r for a in answered for r in (a.record_id, a.provider_record_id)]
    _outboxes_drained(instance)
    logged = log.wait_logged(_all_outbox_record_ids(instance))
    assert set(accepted) <= set(logged)
    assert len(logged) == len(set(logged)), "a record was logged twice"
    assert social.query(population.service, ANNE.id, BENEFIT).data.fields  # released again
    _assert_verifies(log)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
@pytest.mark.parametrize("world", [60.0], indirect=True, ids=["window_60s"])
def test_audit_process_killed_mid_commit_loses_no_acknowledged_record(
    world: tuple[ExchangeInstance, AuditLog],
) -> None:
    """``cdx audit serve`` is SIGKILLed while the outboxes ship a steady stream of records."""
    instance, log = world
    log.spawn()
    for agency in instance.agencies.values():
        agency.start()
    social, population = instance.agency("social"), instance.agency("population")
    with Traffic(lambda: social.query(population.service, ANNE.id, BENEFIT, timeout=5)) as traffic:
        # The log is busy committing batches.
        eventually(lambda: log.size() >= 20, timeout=20, what="the log grew")
        log.kill()
        # What the log acknowledged before dying: the outbox rows marked shipped.
        acknowledged = _shipped_record_ids(instance)
        traffic.wait_answers(5)  # exchanges go on within the outbox window
        log.spawn()
        traffic.wait_answers(5)
    answered = traffic.accepted
    _outboxes_drained(instance)
    logged = log.wait_logged(set(answered) | _all_outbox_record_ids(instance))
    assert acknowledged <= set(logged)
    assert len(logged) == len(set(logged)), "a record was logged twice"
    _assert_verifies(log)


def _shipped_record_ids(instance: ExchangeInstance) -> set[str]:
    import sqlalchemy as sa

    from security_server.store import outbox

    shipped: set[str] = set()
    for agency in instance.agencies.values():
        engine = agency.running.engine
        with engine.connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                sa.select(outbox.c.record_id).where(outbox.c.shipped_ms.is_not(None))
            )
            shipped |= {r.record_id for r in rows}
    return shipped
