"""Faults of the services a security server depends on: the consent service, the registry and
the agency backend. Each runs against a whole instance with a real audit log; afterwards every
accepted record is in the log (exactly once) and ``cdx audit verify`` passes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from cdx import errors, rpc
from cdx.v1 import common_pb2, consent_pb2, exchange_pb2, exchange_pb2_grpc
from registry.server import start_registry
from security_server.backends import start_backend
from security_server.backends.sample import CITIZENS
from tests.integration.consent_env import (
    ALICE,
    CONSENT_PURPOSE,
    TAX_SERVICE,
    ConsentEnv,
    bearer,
    start_consent_env,
    terms,
)
from tests.integration.exchange_harness import ExchangeInstance, build_instance
from tests.waiting import eventually

from .audit_log import AuditLog, attach_audit_log

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


def _settle_and_verify(instance: ExchangeInstance, log: AuditLog, accepted: list[str]) -> None:
    """Every record of every outbox reaches the log once; the log verifies as a whole."""
    eventually(
        lambda: not any(a.running.outbox.depth() for a in instance.agencies.values() if a.server),
        timeout=30,
        interval=0.1,
        what="every outbox drained",
    )
    everything = {
        r.record_id for a in instance.agencies.values() if a.server for r in a.records_since(0)
    }
    logged = log.wait_logged(everything | set(accepted))
    assert len(logged) == len(set(logged)), "a record was logged twice"
    result = log.verify()
    assert result.returncode == 0, result.stdout + result.stderr


def _denied_everywhere(instance: ExchangeInstance, marks: dict[str, int], code: str) -> None:
    seen = [r for k, a in instance.agencies.items() for r in a.records_since(marks[k])]
    assert seen and {r.reason_code for r in seen} == {code}, [r.reason_code for r in seen]
    assert all(r.decision == common_pb2.DENY and not r.released_fields for r in seen)


# --- consent service down ------------------------------------------------------------------------

TTL = timedelta(seconds=1)


@pytest.fixture
def consent_world(tmp_path: Path) -> Iterator[tuple[ConsentEnv, AuditLog]]:
    env = start_consent_env(tmp_path, start_servers=True, checker_ttl=TTL)
    log = attach_audit_log(env.instance, tmp_path)
    try:
        log.start()
        for agency in env.instance.agencies.values():
            agency.restart()  # with its shipper to the log now anchored in global conf
        yield env, log
    finally:
        env.close()
        log.close()


def test_consent_service_down_denies_consent_queries_after_the_ttl_not_legal_ones(
    consent_world: tuple[ConsentEnv, AuditLog],
) -> None:
    env, log = consent_world
    instance = env.instance
    social, tax, population = (instance.agency(k) for k in ("social", "tax", "population"))
    env.citizen().Grant(
        consent_pb2.GrantRequest(terms=terms(ALICE)), metadata=bearer(env.token(ALICE)), timeout=10
    )
    accepted = []
    for _ in range(3):
        r = social.query(TAX_SERVICE, ALICE, CONSENT_PURPOSE)
        accepted += [r.record_id, r.provider_record_id]

    env.consent.stop(0)
    down = time.monotonic()
    marks: dict[str, int] = {}
    calls = 0

    def refused() -> bool:
        nonlocal marks, calls
        marks = {k: a.mark() for k, a in instance.agencies.items()}
        calls = tax.backend.servicer.calls
        try:
            r = social.query(TAX_SERVICE, ALICE, CONSENT_PURPOSE)
        except errors.ConsentUnavailableError:
            return True
        accepted.extend([r.record_id, r.provider_record_id])
        return False

    # Served from the cache for at most its TTL (plus the feed noticing the outage).
    eventually(refused, timeout=TTL.total_seconds() + 5, interval=0.1, what="consent refused")
    assert time.monotonic() - down <= TTL.total_seconds() + 5
    _denied_everywhere(instance, marks, "consent_unavailable")
    assert tax.backend.servicer.calls == calls
    # A legal mandate needs no consent: those exchanges go on.
    for _ in range(3):
        r = social.query(population.service, ANNE.id, BENEFIT)
        assert set(r.data.fields) == {"full_name", "birth_date", "gender"}
        accepted += [r.record_id, r.provider_record_id]
    with pytest.raises(errors.ConsentUnavailableError):  # and consent ones stay refused
        social.query(TAX_SERVICE, ALICE, CONSENT_PURPOSE)
    _settle_and_verify(instance, log, accepted)


# --- registry down -------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ExchangeInstance, AuditLog]]:
    instance = build_instance(tmp_path, start=False)
    log = attach_audit_log(instance, tmp_path)
    try:
        log.start()
        for agency in instance.agencies.values():
            agency.start()
        yield instance, log
    finally:
        instance.close()
        log.close()


def test_registry_down_servers_run_on_the_cached_conf_until_it_expires(
    world: tuple[ExchangeInstance, AuditLog],
) -> None:
    instance, log = world
    social, population = instance.agency("social"), instance.agency("population")
    address = instance.registry.address
    instance.registry.stop()
    accepted = []
    for agency in instance.agencies.values():  # every poll now fails; the copy stays in force
        with pytest.raises(errors.UnavailableError):
            agency.running.conf_client.refresh()
    r = social.query(population.service, ANNE.id, BENEFIT)
    accepted += [r.record_id, r.provider_record_id]

    # Ten minutes later (the configuration's validity) the copies have expired.
    for agency in instance.agencies.values():
        agency.clock.offset = timedelta(minutes=10, seconds=1)
    try:
        marks = {k: a.mark() for k, a in instance.agencies.items()}
        calls = population.backend.servicer.calls
        with pytest.raises(errors.ConfExpiredError):
            social.query(population.service, ANNE.id, BENEFIT)
        _denied_everywhere(instance, marks, "conf_expired")
        assert population.backend.servicer.calls == calls
        eventually(  # and say so in their health
            lambda: social.running.health_problem == "conf_expired",
            timeout=5,
            what="the expired configuration in the server's health",
        )
    finally:
        for agency in instance.agencies.values():
            agency.clock.offset = timedelta(0)

    instance.registry = start_registry(instance.registry.paths, address)
    instance.sync_conf()
    r = social.query(population.service, ANNE.id, BENEFIT)
    accepted += [r.record_id, r.provider_record_id]
    _settle_and_verify(instance, log, accepted)


# --- backend down or slow ------------------------------------------------------------------------


def test_backend_down_is_a_clear_recorded_refusal(world: tuple[ExchangeInstance, AuditLog]) -> None:
    instance, log = world
    social, population = instance.agency("social"), instance.agency("population")
    population.backend.stop()
    marks = {k: a.mark() for k, a in instance.agencies.items()}
    with pytest.raises(errors.BackendUnavailableError) as caught:
        social.query(population.service, ANNE.id, BENEFIT)
    assert caught.value.code == "backend_unavailable"
    _denied_everywhere(instance, marks, "backend_unavailable")
    population.backend = start_backend(
        "population", population.backend.db_path, population.backend.address
    )
    r = eventually(  # the provider's channel reconnects after its backoff
        lambda: social.query(population.service, ANNE.id, BENEFIT),
        timeout=15,
        interval=0.2,
        retry_on=(errors.BackendUnavailableError,),
        what="the provider reconnected to its backend",
    )
    _settle_and_verify(instance, log, [r.record_id, r.provider_record_id])


class _SlowBackend(exchange_pb2_grpc.DataProviderServicer):  # type: ignore[misc]
    """A backend that answers only after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.released = threading.Event()

    def Fetch(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.released.wait(self.delay)
        return exchange_pb2.FetchResponse()


def test_slow_backend_is_cut_off_at_the_deadline(world: tuple[ExchangeInstance, AuditLog]) -> None:
    instance, log = world
    social, population = instance.agency("social"), instance.agency("population")
    slow = _SlowBackend(delay=30)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    exchange_pb2_grpc.add_DataProviderServicer_to_server(slow, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        population.stop()
        population.config = dataclasses.replace(
            population.config,
            backends={population.subsystem: f"127.0.0.1:{port}"},
            limits=dataclasses.replace(population.config.limits, backend_timeout_s=0.5),
        )
        population.start()
        marks = {k: a.mark() for k, a in instance.agencies.items()}
        started = time.monotonic()
        with pytest.raises(
            (errors.DeadlineExceededError, errors.BackendUnavailableError)
        ) as caught:
            social.query(population.service, ANNE.id, BENEFIT)
        elapsed = time.monotonic() - started
        assert elapsed < 0.5 + 2.0, f"the provider waited {elapsed:.1f} s for a 0.5 s deadline"
        assert slow.calls == 1
        _denied_everywhere(instance, marks, caught.value.code)
    finally:
        slow.released.set()
        server.stop(0)
    _settle_and_verify(instance, log, [])


def test_consumer_deadline_is_honoured_when_the_provider_hangs(
    world: tuple[ExchangeInstance, AuditLog],
) -> None:
    """The information system's own call deadline bounds its wait, whatever the provider does."""
    instance, log = world
    social, population = instance.agency("social"), instance.agency("population")
    slow = _SlowBackend(delay=30)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    exchange_pb2_grpc.add_DataProviderServicer_to_server(slow, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        population.stop()
        population.config = dataclasses.replace(
            population.config, backends={population.subsystem: f"127.0.0.1:{port}"}
        )
        population.start()
        started = time.monotonic()
        request = exchange_pb2.QueryRequest(
            client=social.subsystem, service=population.service, subject=ANNE.id, purpose=BENEFIT
        )
        with pytest.raises(errors.CdxError) as caught:
            rpc.invoke(social.gateway().Query, request, timeout=1.0)
        assert caught.value.code in ("deadline_exceeded", "unavailable")
        assert time.monotonic() - started < 3.0
    finally:
        slow.released.set()
        server.stop(0)
    _settle_and_verify(instance, log, [])
