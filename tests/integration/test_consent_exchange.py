"""Consent-based exchanges end to end: registry, three running security servers (each with a
``CachedConsentChecker`` on the consent service's change feed), the consent service, backends.

The social insurance agency (``VN:GOV:VSS:benefits``) asks the tax agency's income service for
``SOCIAL_BENEFIT_ELIGIBILITY`` under a CONSENT agreement (fields ``annual_income``,
``tax_year``); its population query runs on a legal mandate.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from cdx import errors
from cdx.v1 import common_pb2, consent_pb2
from tests.conftest import postgres_url
from tests.integration.consent_env import (
    ALICE,
    BOB,
    CONSENT_PURPOSE,
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX,
    TAX_SERVICE,
    ConsentEnv,
    bearer,
    start_consent_env,
    terms,
)

CAROL = "079090000003"  # has a tax record
DAVID = "079090000005"  # has a tax record
POPULATION_SERVICE = "VN:GOV:BCA:population/person/v1"

#: Measured revocation-to-enforcement times (printed at the end of the module with -s).
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsentEnv]:
    url = schema = None
    if request.param == "postgres":
        url = postgres_url()
        if not url:
            pytest.skip("PostgreSQL not configured: set CDX_TEST_POSTGRES_URL")
        schema = f"t_consent_x_{uuid.uuid4().hex[:10]}"
    built = start_consent_env(
        tmp_path_factory.mktemp(f"consent-exchange-{request.param}"),
        url,
        schema,
        start_servers=True,
    )
    yield built
    built.close()
    if url and schema:
        from cdx import db

        db.drop_schema(url, schema)
    if MEASURED:
        print(
            "\nrevocation to enforcement:", {k: f"{v * 1000:.1f} ms" for k, v in MEASURED.items()}
        )


def query(env: ConsentEnv, citizen: str, fields: tuple[str, ...] = ()) -> Any:
    return env.instance.agency(SOCIAL).query(TAX_SERVICE, citizen, CONSENT_PURPOSE, fields)


def citizen_call(env: ConsentEnv, citizen: str, name: str, consent_id: str) -> consent_pb2.Consent:
    method = getattr(env.citizen(), name)
    return method(  # type: ignore[no-any-return]
        consent_pb2.ConsentActionRequest(consent_id=consent_id),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def grant(env: ConsentEnv, citizen: str, **kw: Any) -> consent_pb2.Consent:
    return env.citizen().Grant(  # type: ignore[no-any-return]
        consent_pb2.GrantRequest(terms=terms(citizen, **kw)),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def denied_code(env: ConsentEnv, citizen: str, fields: tuple[str, ...] = ()) -> str:
    with pytest.raises(errors.ConsentDeniedError) as info:
        query(env, citizen, fields)
    return info.value.code


def test_consent_lifecycle_controls_access(env: ConsentEnv) -> None:
    tax_checker = env.checkers[TAX]
    assert denied_code(env, ALICE) == "consent_missing"

    # The social insurance agency asks through its own security server; the citizen approves.
    api = env.agency_api(env.server_identity(SOCIAL))
    pending = api.RequestConsent(
        consent_pb2.RequestConsentRequest(
            requester=SOCIAL_SUBSYSTEM, terms=terms(ALICE, fields=["annual_income"])
        ),
        timeout=10,
    )
    assert denied_code(env, ALICE) == "consent_missing"  # pending is not consent
    citizen_call(env, ALICE, "Approve", pending.id)
    # The approval reaches the provider's cache through the feed, like any change (a query in
    # the same few milliseconds may still meet the cached denial).
    assert _allowed_within(env, ALICE, 1.0) < 1.0

    answer = query(env, ALICE)
    assert set(answer.data.fields) == {"annual_income"}  # the agreement also permits tax_year
    assert list(answer.released_fields) == ["annual_income"]
    assert answer.lawful_basis == common_pb2.CONSENT and answer.consent_id == pending.id
    assert denied_code(env, ALICE, ("annual_income", "tax_year")) == "consent_field"

    hits = tax_checker.hits
    query(env, ALICE)
    assert tax_checker.hits > hits  # served from the provider's cache from now on

    citizen_call(env, ALICE, "Pause", pending.id)
    assert _denied_within(env, ALICE, "consent_paused", 1.0) < 1.0
    citizen_call(env, ALICE, "Resume", pending.id)
    assert _allowed_within(env, ALICE, 1.0) < 1.0

    query(env, ALICE)  # an allow is cached again
    changes = tax_checker.changes_seen
    started = time.monotonic()
    citizen_call(env, ALICE, "Revoke", pending.id)
    revoked_at = time.monotonic()
    while tax_checker.changes_seen == changes and time.monotonic() - started < 1.0:
        time.sleep(0.001)
    MEASURED["change pushed to provider cache"] = time.monotonic() - revoked_at
    elapsed = _denied_within(env, ALICE, "consent_revoked", 1.0)
    MEASURED["revoke call returned -> query denied"] = elapsed
    assert elapsed < 1.0
    assert MEASURED["change pushed to provider cache"] < 1.0


def _denied_within(env: ConsentEnv, citizen: str, code: str, bound: float) -> float:
    """Seconds until a query is denied with ``code`` (an upper bound, polled every 10 ms)."""
    started = time.monotonic()
    while True:
        try:
            query(env, citizen)
        except errors.ConsentDeniedError as exc:
            if exc.code == code:
                return time.monotonic() - started
        if time.monotonic() - started > bound:
            raise AssertionError(f"still not denied with {code} after {bound} s")
        time.sleep(0.01)


def _allowed_within(env: ConsentEnv, citizen: str, bound: float) -> float:
    started = time.monotonic()
    while True:
        try:
            query(env, citizen)
            return time.monotonic() - started
        except errors.ConsentDeniedError:
            pass
        if time.monotonic() - started > bound:
            raise AssertionError(f"still denied after {bound} s")
        time.sleep(0.01)


def test_expired_consent_denies(env: ConsentEnv) -> None:
    grant(env, CAROL, valid_for=timedelta(seconds=2))
    assert set(query(env, CAROL).data.fields) == {"annual_income"}
    time.sleep(2.0)
    assert _denied_within(env, CAROL, "consent_expired", 2.0) < 2.0


def test_max_uses_are_enforced_across_cache(env: ConsentEnv) -> None:
    consent = grant(env, DAVID, fields=["annual_income", "tax_year"], max_uses=2)
    first = query(env, DAVID)
    assert set(first.data.fields) == {"annual_income", "tax_year"}
    query(env, DAVID)
    assert denied_code(env, DAVID) == "consent_uses_exhausted"
    listed = env.citizen().ListMyConsents(
        consent_pb2.ListMyConsentsRequest(), metadata=bearer(env.token(DAVID))
    )
    assert [(c.id, c.uses) for c in listed.consents] == [(consent.id, 2)]


def test_legal_mandate_needs_no_consent(env: ConsentEnv) -> None:
    answer = env.instance.agency(SOCIAL).query(
        POPULATION_SERVICE, BOB, "SOCIAL_BENEFIT_ELIGIBILITY"
    )
    assert answer.lawful_basis == common_pb2.LEGAL_OBLIGATION
    assert answer.consent_id == "" and "full_name" in answer.data.fields
    # while the same citizen's tax data still needs consent
    assert denied_code(env, BOB) == "consent_missing"
