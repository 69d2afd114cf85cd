"""Health that sees failures: a dependency that fails shows in ``/healthz`` (which peer, last
success, last error), is logged once naming the peer, and stops the process serving only where
that is right (docs/operations.md, "Health").

- a killed backend: the security server is *degraded* (its other services and its gateway
  work), the backend's services are NOT_SERVING in gRPC health; back when the backend is;
- the audit log down: *degraded* while the outbox is within its window, *unhealthy* (and gRPC
  NOT_SERVING) once the backlog passes it; healthy again once the records shipped;
- the registry down: *degraded* while the configuration copy is current;
- the consent service and the audit log down: the portal and every security server say so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdx import errors, health, rpc
from portal.health import dependency_checks
from security_server.backends import start_backend
from security_server.backends.sample import CITIZENS
from stack.provision import create_instance
from stack.runtime import StackOptions, start_instance
from tests.integration.exchange_harness import Agency, ExchangeInstance, build_instance

from .audit_log import AuditLog, attach_audit_log

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"
WINDOW_S = 2.0


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Healthz:
    """A ``cdx.health`` endpoint over some checks, as ``--health-listen`` serves it."""

    def __init__(self, checks: list[health.Check], clock: Any = None) -> None:
        kwargs = {"clock": clock} if clock is not None else {}
        self.endpoint = health.HealthEndpoint("127.0.0.1:0", checks, **kwargs)

    def get(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.endpoint.url + "/healthz", timeout=5) as r:
                return int(r.status), json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read())

    def close(self) -> None:
        self.endpoint.stop()


def _grpc_health(agency: Agency, identity: rpc.TlsIdentity, service: str = "") -> int:
    channel = rpc.secure_channel(agency.running.exchange_address, identity)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(reply.status)
    finally:
        channel.close()


def _failures(caplog: pytest.LogCaptureFixture, owner: str, peer: str) -> list[str]:
    """Log lines of ``owner`` about a failure of the dependency at ``peer``."""
    return [
        m
        for m in (r.getMessage() for r in caplog.records if r.name == "cdx.dependencies")
        if m.startswith(f"{owner}: ") and f" at {peer} failed" in m
    ]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[ExchangeInstance]:
    inst = build_instance(
        tmp_path,
        configure=lambda key, config: dataclasses.replace(config, dependency_probe_s=3600.0),
    )  # probes run when a test says so (probe_dependencies), not on a timer
    yield inst
    inst.close()


def test_killed_backend_degrades_health_names_the_peer_once_and_recovers(
    instance: ExchangeInstance, caplog: pytest.LogCaptureFixture
) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    server = population.running
    name = f"{population.server_id} backend {population.subsystem}"
    healthz = Healthz(server.health.checks())
    try:
        server.probe_dependencies()
        status, report = healthz.get()
        assert (status, report["status"]) == (200, "ok"), report

        backend = population.backend
        backend.stop()
        with caplog.at_level(logging.INFO, logger="cdx.dependencies"):
            for _ in range(5):  # five probe rounds: one log line, no storm
                server.probe_dependencies()
            with pytest.raises(errors.BackendUnavailableError):
                social.query(population.service, ANNE.id, BENEFIT)
        (line,) = _failures(caplog, population.server_id, backend.address)
        assert f"backend {population.subsystem}" in line

        status, report = healthz.get()
        assert (status, report["status"]) == (200, "degraded"), report
        assert report["checks"][name] == "unavailable"
        detail = report["details"][name]
        assert detail["peer"] == backend.address and detail["state"] == "down"
        assert detail["last_success"] is not None
        assert detail["last_error"]["code"] == "unavailable"
        assert detail["last_error"]["peer"] == backend.address

        # gRPC health: the server serves, the backend's services do not.
        _wait(lambda: server.health.services() == {population.subsystem: False}, "services")
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        identity = social.exchange_identity()
        assert _grpc_health(population, identity) == serving
        _wait(
            lambda: _grpc_health(population, identity, population.subsystem) == not_serving,
            "the backend's services NOT_SERVING",
        )
        # The server still asks as a consumer.
        population.query(social.service, ANNE.id, "IDENTITY_VERIFICATION")

        population.backend = start_backend("population", backend.db_path, backend.address)
        with caplog.at_level(logging.INFO, logger="cdx.dependencies"):
            server.probe_dependencies()
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        status, report = healthz.get()
        assert (status, report["status"]) == (200, "ok"), report
        assert social.query(population.service, ANNE.id, BENEFIT).released_fields
        _wait(
            lambda: _grpc_health(population, identity, population.subsystem) == serving,
            "the backend's services SERVING again",
        )
    finally:
        healthz.close()


def test_registry_down_degrades_while_the_configuration_is_current(
    instance: ExchangeInstance,
) -> None:
    population = instance.agency("population")
    server = population.running
    healthz = Healthz(server.health.checks())
    try:
        address = instance.registry.address
        instance.registry.stop()
        server.probe_dependencies()
        status, report = healthz.get()
        assert (status, report["status"]) == (200, "degraded"), report
        assert report["checks"][f"{population.server_id} registry"] == "unavailable"
        assert report["details"][f"{population.server_id} registry"]["peer"] == address
        assert report["checks"][f"{population.server_id} globalconf"] == "ok"
    finally:
        healthz.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ExchangeInstance, AuditLog]]:
    instance = build_instance(
        tmp_path,
        start=False,
        configure=lambda key, config: dataclasses.replace(
            config, outbox_window_s=WINDOW_S, dependency_probe_s=3600.0
        ),
    )
    log = attach_audit_log(instance, tmp_path)
    try:
        log.start()
        for agency in instance.agencies.values():
            agency.start()
        yield instance, log
    finally:
        instance.close()
        log.close()


def test_audit_log_down_degrades_until_the_window_then_stops_serving(
    world: tuple[ExchangeInstance, AuditLog], caplog: pytest.LogCaptureFixture
) -> None:
    instance, log = world
    social, population = instance.agency("social"), instance.agency("population")
    server = population.running
    name = f"{population.server_id} audit log"
    healthz = Healthz(server.health.checks(), clock=population.clock)
    try:
        log.stop()
        with caplog.at_level(logging.INFO, logger="cdx.dependencies"):
            for _ in range(3):
                server.probe_dependencies()
            answer = social.query(population.service, ANNE.id, BENEFIT)  # within the window
            _wait(lambda: server.outbox.ship_failures > 0, "a failed shipment")
        assert len(_failures(caplog, population.server_id, log.address)) == 1
        status, report = healthz.get()
        assert (status, report["status"]) == (200, "degraded"), report
        assert report["checks"][name] == "unavailable"
        assert report["details"][name]["peer"] == log.address
        assert report["checks"][f"{population.server_id} outbox"] == "ok"

        for agency in instance.agencies.values():  # the backlog outlives the window
            agency.clock.offset += timedelta(seconds=3 * WINDOW_S)
        status, report = healthz.get()
        assert (status, report["status"]) == (503, "unhealthy"), report
        assert report["checks"][f"{population.server_id} outbox"] == "audit_backlog"
        _wait(lambda: server.health_problem == "audit_backlog", "gRPC health NOT_SERVING")

        log.start()
        log.wait_logged([answer.record_id, answer.provider_record_id])
        _wait(lambda: server.outbox.depth() == 0, "the outbox to drain")
        server.probe_dependencies()
        status, report = healthz.get()
        assert (status, report["status"]) == (200, "ok"), report
        _wait(lambda: server.health_problem is None, "gRPC health SERVING again")
    finally:
        healthz.close()


def test_consent_service_and_audit_log_down_show_in_the_portal_and_the_servers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    create_instance(data)
    inst = start_instance(data, StackOptions(checkpoint_interval=0.5, witness_interval=0.5))
    stop_probing: Callable[[], None] | None = None
    try:
        assert inst.portal is not None
        portal_checks, stop_probing = dependency_checks(data, inst.portal, interval=0.1)
        portal = Healthz(portal_checks)
        stack = Healthz(inst.health_checks())
        try:
            _wait(lambda: portal.get()[1]["status"] == "ok", "the portal's dependencies up")
            consent_address, audit_address = inst.consent.address, inst.audit.address
            inst.consent.stop(0)
            inst.audit.stop(0)

            def degraded() -> bool:
                _, report = portal.get()
                return report["checks"] == {
                    "portal audit log": "unavailable",
                    "portal consent service": "unavailable",
                }

            _wait(degraded, "the portal to see both services down")
            status, report = portal.get()
            assert (status, report["status"]) == (200, "degraded")
            assert report["details"]["portal audit log"]["peer"] == audit_address
            assert report["details"]["portal consent service"]["peer"] == consent_address

            for server in inst.servers.values():
                server.probe_dependencies()
            _, report = stack.get()
            for server in inst.servers.values():
                assert report["checks"][f"{server.server_id} audit log"] == "unavailable"
                assert report["checks"][f"{server.server_id} consent service"] == "unavailable"
        finally:
            portal.close()
            stack.close()
    finally:
        if stop_probing is not None:
            stop_probing()
        inst.stop()
