"""``security_server.health.ServerHealth`` from its parts (no running server): which failures
stop the server serving and which only degrade it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdx import errors, health
from cdx.dependencies import Dependencies
from security_server.health import DEAD_LETTERS, ServerHealth

NOW = datetime(2025, 12, 5, 9, 0, 0, tzinfo=UTC)
SERVER = "VN:GOV:BCA:ss1"


class Outbox:
    def __init__(self) -> None:
        self.backlog = False
        self.dead = 0

    def check_release(self, now: datetime) -> None:
        if self.backlog:
            raise errors.OutboxBacklogError()

    def depth(self) -> int:
        return 0

    def dead_letter_count(self) -> int:
        return self.dead

    def oldest_unshipped_age(self, now: datetime) -> timedelta | None:
        return None


class Witness:
    accepted = None

    def __init__(self) -> None:
        self.alarm: str | None = None

    def health(self) -> str | None:
        return self.alarm


class Parts:
    def __init__(self) -> None:
        self.conf_expired = False
        self.outbox = Outbox()
        self.witness = Witness()
        self.deps = Dependencies(SERVER, clock=lambda: NOW)
        self.audit = self.deps.add("audit log", "10.0.0.7:7000")
        self.backend = self.deps.add("backend VN:GOV:BCA:population", "127.0.0.1:6001")
        self.health = ServerHealth(
            SERVER,
            conf=self.conf,
            latest_conf=lambda: None,
            certificates=lambda: (),
            outbox=self.outbox,
            dependencies=self.deps,
            backends={"VN:GOV:BCA:population": self.backend},
            clock=lambda: NOW,
            witness=lambda: self.witness,
        )

    def conf(self, now: datetime) -> object:
        if self.conf_expired:
            raise errors.ConfExpiredError()
        return object()

    def status(self) -> str:
        checks = self.health.checks()
        return health.overall(checks, health.evaluate(checks, NOW))


def test_a_healthy_server_is_ok_and_serving() -> None:
    parts = Parts()
    assert parts.status() == health.OK and parts.health.problem() is None
    assert parts.health.services() == {"VN:GOV:BCA:population": True}


@pytest.mark.parametrize(
    ("fail", "code"),
    [
        (lambda p: setattr(p, "conf_expired", True), "conf_expired"),
        (lambda p: setattr(p.outbox, "backlog", True), "audit_backlog"),
        (lambda p: setattr(p.witness, "alarm", "forked"), "witness_alarm"),
    ],
    ids=["conf_expired", "audit_backlog", "witness_alarm"],
)
def test_critical_failures_stop_the_server_serving(fail, code: str) -> None:  # type: ignore[no-untyped-def]
    parts = Parts()
    fail(parts)
    assert parts.status() == health.UNHEALTHY and parts.health.problem() == code


def test_a_failing_dependency_or_a_dead_letter_only_degrades_it() -> None:
    parts = Parts()
    parts.audit.failed("unavailable")
    parts.outbox.dead = 2
    results = health.evaluate(parts.health.checks(), NOW)
    assert results[f"{SERVER} audit log"] == "unavailable"
    assert results[f"{SERVER} outbox dead letters"] == DEAD_LETTERS
    assert parts.status() == health.DEGRADED and parts.health.problem() is None


def test_a_failing_backend_takes_only_its_services_out() -> None:
    parts = Parts()
    parts.backend.failed("unavailable")
    assert parts.health.services() == {"VN:GOV:BCA:population": False}
    assert parts.health.problem() is None
