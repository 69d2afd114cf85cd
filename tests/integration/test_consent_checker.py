"""``CachedConsentChecker`` against real consent service replicas over mutual TLS.

The checker talks to a replica that shares the database with the main consent service (the
scale-out shape): a change committed through one replica reaches a checker subscribed to the
other through the database poll, a replica can be stopped (the service is unreachable) and
started again on the same port (the checker reconnects and replays what it missed).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from cdx import errors
from cdx.clock import utcnow
from cdx.v1 import consent_pb2
from consent.checker import CachedConsentChecker
from tests.conftest import postgres_url
from tests.integration.consent_env import (
    CONSENT_PURPOSE,
    SOCIAL_SUBSYSTEM,
    TAX,
    TAX_SERVICE,
    ConsentEnv,
    bearer,
    start_consent_env,
    terms,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsentEnv]:
    url = schema = None
    if request.param == "postgres":
        url = postgres_url()
        if not url:
            pytest.skip("PostgreSQL not configured: set CDX_TEST_POSTGRES_URL")
        schema = f"t_consent_c_{uuid.uuid4().hex[:10]}"
    built = start_consent_env(
        tmp_path_factory.mktemp(f"consent-checker-{request.param}"), url, schema
    )
    yield built
    built.close()
    if url and schema:
        from cdx import db

        db.drop_schema(url, schema)


_ids = iter(range(1, 10**6))


def citizen() -> str:
    return f"0792{next(_ids) + int(time.time()) % 1000 * 1000:08d}"


def grant(env: ConsentEnv, subject: str, **kw: Any) -> consent_pb2.Consent:
    return env.citizen().Grant(  # type: ignore[no-any-return]
        consent_pb2.GrantRequest(terms=terms(subject, **kw)),
        metadata=bearer(env.token(subject)),
        timeout=10,
    )


def act(env: ConsentEnv, subject: str, name: str, consent_id: str) -> None:
    getattr(env.citizen(), name)(
        consent_pb2.ConsentActionRequest(consent_id=consent_id),
        metadata=bearer(env.token(subject)),
        timeout=10,
    )


def check(
    checker: CachedConsentChecker, subject: str, fields: tuple[str, ...] = ("annual_income",)
) -> Any:
    return checker.check(
        subject=subject,
        client=SOCIAL_SUBSYSTEM,
        service=TAX_SERVICE,
        purpose=CONSENT_PURPOSE,
        fields=fields,
        consent_id=None,
        now=utcnow(),
    )


def checker_for(env: ConsentEnv, address: str, **kw: Any) -> CachedConsentChecker:
    checker = CachedConsentChecker(address, env.server_identity(TAX), **kw)
    assert checker.wait_connected(5)
    return checker


def test_decisions_are_cached_and_dropped_when_a_change_arrives(env: ConsentEnv) -> None:
    replica = env.start_replica()
    checker = checker_for(env, replica.address)
    try:
        alice = citizen()
        with pytest.raises(errors.ConsentDeniedError):
            check(checker, alice)
        with pytest.raises(errors.ConsentDeniedError):
            check(checker, alice)
        assert (checker.misses, checker.hits) == (1, 1)  # a denial is cached too
        consent = grant(env, alice)  # through the other replica
        deadline = time.monotonic() + 1.0
        while len(checker) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(checker) == 0
        grant_ = check(checker, alice, ("annual_income", "tax_year"))
        assert grant_.consent_id == consent.id
        assert grant_.allowed_fields == frozenset({"annual_income"})
        assert check(checker, alice, ("annual_income", "tax_year")) == grant_
        hits = checker.hits
        started = time.monotonic()
        act(env, alice, "Revoke", consent.id)
        while len(checker) and time.monotonic() - started < 1.0:
            time.sleep(0.002)
        dropped_after = time.monotonic() - started
        assert dropped_after < 1.0  # includes the other replica's 200 ms database poll
        with pytest.raises(errors.ConsentRevokedError):
            check(checker, alice, ("annual_income", "tax_year"))
        assert checker.hits == hits
    finally:
        checker.close()
        replica.stop(0)


def test_another_citizens_change_keeps_cached_allows(env: ConsentEnv) -> None:
    checker = checker_for(env, env.consent.address)
    try:
        alice, bob = citizen(), citizen()
        grant(env, alice)
        bobs = grant(env, bob)
        check(checker, alice)
        check(checker, bob)
        seen = checker.changes_seen
        act(env, bob, "Revoke", bobs.id)
        deadline = time.monotonic() + 1.0
        while checker.changes_seen == seen and time.monotonic() < deadline:
            time.sleep(0.002)
        assert checker.changes_seen > seen
        hits = checker.hits
        check(checker, alice)  # still served from the cache
        assert checker.hits == hits + 1
        with pytest.raises(errors.ConsentRevokedError):
            check(checker, bob)
    finally:
        checker.close()


def test_counted_consents_always_ask_the_service(env: ConsentEnv) -> None:
    checker = checker_for(env, env.consent.address)
    try:
        alice = citizen()
        grant(env, alice, max_uses=3)
        for _ in range(3):
            assert check(checker, alice).allowed_fields == frozenset({"annual_income"})
        with pytest.raises(errors.ConsentExhaustedError):
            check(checker, alice)
        assert checker.hits == 0 and checker.misses == 4
    finally:
        checker.close()


def test_unreachable_service_serves_fresh_entries_then_fails_closed(env: ConsentEnv) -> None:
    replica = env.start_replica()
    checker = checker_for(env, replica.address, ttl=timedelta(seconds=1.5), call_timeout=0.5)
    try:
        alice, bob = citizen(), citizen()
        grant(env, alice)
        cached = check(checker, alice)
        replica.stop(0)
        assert check(checker, alice) == cached  # younger than the TTL: still served
        deadline = time.monotonic() + 10  # the feed notices the outage asynchronously
        while checker.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not checker.connected
        with pytest.raises(errors.ConsentUnavailableError):
            check(checker, bob)  # nothing cached: fail closed
        time.sleep(1.6)
        with pytest.raises(errors.ConsentUnavailableError):
            check(checker, alice)  # older than the TTL: fail closed
    finally:
        checker.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_checker_reconnects_and_replays_changes_it_missed(env: ConsentEnv) -> None:
    address = f"127.0.0.1:{_free_port()}"
    replica = env.start_replica(address)
    checker = checker_for(env, address, ttl=timedelta(minutes=5))
    try:
        alice = citizen()
        consent = grant(env, alice)
        check(checker, alice)
        assert len(checker) == 1
        replica.stop(0)
        act(env, alice, "Pause", consent.id)  # while the checker's replica is down
        seen = checker.changes_seen
        replica = env.start_replica(address)
        assert checker.wait_connected(10)
        # The missed change is replayed on reconnect (it may arrive just after the connect).
        deadline = time.monotonic() + 10
        while checker.changes_seen <= seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert checker.changes_seen > seen
        assert len(checker) == 0
        with pytest.raises(errors.ConsentPausedError):
            check(checker, alice)
    finally:
        checker.close()
        replica.stop(0)
