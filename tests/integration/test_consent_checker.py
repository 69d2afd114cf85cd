"""``CachedConsentChecker`` against real consent service replicas over mutual TLS.

The checker talks to a replica that shares the database with the main consent service (the
scale-out shape): a change committed through one replica reaches a checker subscribed to the
other through the database poll, a replica can be stopped (the service is unreachable) and
started again on the same port (the checker reconnects and replays what it missed).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cdx import errors
from cdx.clock import utcnow
from consent.checker import CachedConsentChecker
from tests.integration.consent_env import (
    CONSENT_PURPOSE,
    SOCIAL_SUBSYSTEM,
    TAX,
    TAX_SERVICE,
    ConsentEnv,
    act,
    consent_env_fixture,
    fresh_citizen,
    grant,
)
from tests.waiting import ManualClock, eventually

env = consent_env_fixture("consent-checker")


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
        alice = fresh_citizen()
        with pytest.raises(errors.ConsentDeniedError):
            check(checker, alice)
        with pytest.raises(errors.ConsentDeniedError):
            check(checker, alice)
        assert (checker.misses, checker.hits) == (1, 1)  # a denial is cached too
        consent = grant(env, alice)  # through the other replica
        eventually(lambda: len(checker) == 0, timeout=1.0, what="the denial dropped")
        grant_ = check(checker, alice, ("annual_income", "tax_year"))
        assert grant_.consent_id == consent.id
        assert grant_.allowed_fields == frozenset({"annual_income"})
        assert check(checker, alice, ("annual_income", "tax_year")) == grant_
        hits = checker.hits
        act(env, alice, "Revoke", consent.id)
        # Within a second, including the other replica's 200 ms database poll.
        eventually(lambda: len(checker) == 0, timeout=1.0, what="the allow dropped")
        with pytest.raises(errors.ConsentRevokedError):
            check(checker, alice, ("annual_income", "tax_year"))
        assert checker.hits == hits
    finally:
        checker.close()
        replica.stop(0)


def test_another_citizens_change_keeps_cached_allows(env: ConsentEnv) -> None:
    checker = checker_for(env, env.consent.address)
    try:
        alice, bob = fresh_citizen(), fresh_citizen()
        grant(env, alice)
        bobs = grant(env, bob)
        check(checker, alice)
        check(checker, bob)
        assert len(checker) == 2
        act(env, bob, "Revoke", bobs.id)
        # Bob's revocation drops his entry only (changes already reflected drop nothing).
        eventually(lambda: len(checker) == 1, timeout=1.0, what="bob's entry dropped")
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
        alice = fresh_citizen()
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
    clock = ManualClock()
    checker = checker_for(
        env, replica.address, ttl=timedelta(seconds=30), call_timeout=0.5, monotonic=clock
    )
    try:
        alice, bob = fresh_citizen(), fresh_citizen()
        grant(env, alice)
        cached = check(checker, alice)
        replica.stop(0)
        clock.advance(29)
        assert check(checker, alice) == cached  # younger than the TTL: still served
        # The feed notices the outage asynchronously.
        eventually(lambda: not checker.connected, timeout=10, what="the feed noticed the outage")
        with pytest.raises(errors.ConsentUnavailableError):
            check(checker, bob)  # nothing cached: fail closed
        assert check(checker, alice) == cached  # the service is unreachable: still fresh
        clock.advance(1)
        with pytest.raises(errors.ConsentUnavailableError):
            check(checker, alice)  # as old as the TTL: fail closed
    finally:
        checker.close()


def test_checker_reconnects_and_replays_changes_it_missed(env: ConsentEnv) -> None:
    replica = env.start_replica()
    address = replica.address  # the replica comes back on the port it bound
    checker = checker_for(env, address, ttl=timedelta(minutes=5))
    try:
        alice = fresh_citizen()
        consent = grant(env, alice)
        check(checker, alice)
        assert len(checker) == 1
        replica.stop(0)
        act(env, alice, "Pause", consent.id)  # while the checker's replica is down
        seen = checker.changes_seen
        replica = env.start_replica(address)
        assert checker.wait_connected(10)
        # The missed change is replayed on reconnect (it may arrive just after the connect).
        eventually(lambda: checker.changes_seen > seen, timeout=10, what="the missed change")
        assert len(checker) == 0
        with pytest.raises(errors.ConsentPausedError):
            check(checker, alice)
    finally:
        checker.close()
        replica.stop(0)
