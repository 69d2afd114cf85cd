"""``cdx.dependencies`` and the degraded state of ``cdx.health``: a dependency's state, one log
line per change naming the peer, and which failures make a process unhealthy."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from cdx import health
from cdx.dependencies import Dependencies, Dependency, health_check

T0 = datetime(2025, 12, 5, 9, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _dep(clock: Clock, **kwargs: object) -> Dependency:
    return Dependency("audit log", "10.0.0.7:7000", owner="VN:GOV:BCA:ss1", clock=clock, **kwargs)  # type: ignore[arg-type]


def test_a_dependency_remembers_its_last_success_and_last_error() -> None:
    clock = Clock()
    dep = _dep(clock)
    assert dep.state().as_dict() == {
        "peer": "10.0.0.7:7000",
        "state": "unknown",
        "last_success": None,
        "last_error": None,
    }
    dep.succeeded()
    clock.now = T0 + timedelta(seconds=5)
    dep.failed("unavailable")
    assert dep.problem() == "unavailable"
    assert dep.state().as_dict() == {
        "peer": "10.0.0.7:7000",
        "state": "down",
        "last_success": "2025-12-05T09:00:00Z",
        "last_error": {
            "code": "unavailable",
            "peer": "10.0.0.7:7000",
            "at": "2025-12-05T09:00:05Z",
        },
    }
    dep.succeeded()
    assert dep.problem() is None and dep.state().last_error is not None  # the last error stays


def test_a_failing_peer_is_logged_once_per_change_with_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dep = _dep(Clock())
    with caplog.at_level(logging.INFO, logger="cdx.dependencies"):
        for _ in range(50):
            dep.failed("unavailable")  # a retry loop: no log storm
        dep.failed("deadline_exceeded")  # a new code is a new state
        dep.failed("deadline_exceeded")
        dep.succeeded()
        dep.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "VN:GOV:BCA:ss1: audit log at 10.0.0.7:7000 failed: unavailable",
        "VN:GOV:BCA:ss1: audit log at 10.0.0.7:7000 failed: deadline_exceeded",
        "VN:GOV:BCA:ss1: audit log at 10.0.0.7:7000 is reachable again",
    ]


def test_a_probe_that_finds_the_peer_serving_does_not_hide_a_failing_call() -> None:
    clock = Clock()
    dep = _dep(clock, call_memory=timedelta(seconds=30))
    dep.failed("unknown_key")  # the log answers, but refuses our records
    dep.succeeded(probe=True)
    assert dep.problem() == "unknown_key"
    clock.now = T0 + timedelta(seconds=31)  # no call has failed for a while: believe the probe
    dep.succeeded(probe=True)
    assert dep.problem() is None
    dep.failed("unavailable", probe=True)  # a probe's failure counts at once
    assert dep.problem() == "unavailable"
    dep.succeeded(probe=True)
    assert dep.problem() is None
    dep.failed("unavailable")  # a call found it unreachable: a probe can tell otherwise
    dep.succeeded(probe=True)
    assert dep.problem() is None


def test_the_peer_address_may_follow_configuration() -> None:
    address = ["10.0.0.7:7000"]
    dep = Dependency("audit log", lambda: address[0], clock=Clock())
    dep.failed("unavailable")
    address[0] = "10.0.0.8:7000"
    state = dep.state()
    assert state.peer == "10.0.0.8:7000"
    assert state.last_error is not None and state.last_error.peer == "10.0.0.7:7000"


def test_dependency_checks_degrade_and_critical_checks_fail() -> None:
    deps = Dependencies("VN:GOV:BCA:ss1", clock=Clock())
    backend = deps.add("backend VN:GOV:BCA:population", "127.0.0.1:6001")
    assert deps.add("backend VN:GOV:BCA:population", "ignored") is backend
    checks = [health.problem_check("conf", lambda: None), *deps.health_checks("ss1 ")]
    results = health.evaluate(checks, T0)
    assert health.overall(checks, results) == health.OK
    backend.failed("unavailable")
    results = health.evaluate(checks, T0)
    assert results["ss1 backend VN:GOV:BCA:population"] == "unavailable"
    assert health.overall(checks, results) == health.DEGRADED
    details = health.details(checks)
    assert details["ss1 backend VN:GOV:BCA:population"]["state"] == "down"
    checks.append(health.problem_check("outbox", lambda: "audit_backlog"))
    assert health.overall(checks, health.evaluate(checks, T0)) == health.UNHEALTHY


def test_a_result_without_a_check_is_critical() -> None:
    assert health.overall([], {"startup": "starting"}) == health.UNHEALTHY


def test_a_dependency_check_is_not_critical() -> None:
    check = health_check(_dep(Clock()))
    assert not check.critical and check.fn(T0) is None
