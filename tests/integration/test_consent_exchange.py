"""Consent-based exchanges end to end: registry, three running security servers (each with a
``CachedConsentChecker`` on the consent service's change feed), the consent service, backends.

The social insurance agency (``VN:GOV:VSS:benefits``) asks the tax agency's income service for
``SOCIAL_BENEFIT_ELIGIBILITY`` under a CONSENT agreement (fields ``annual_income``,
``tax_year``); its population query runs on a legal mandate.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdx import errors
from cdx.v1 import common_pb2, consent_pb2
from tests.integration.consent_env import (
    ALICE,
    BOB,
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX,
    ConsentEnv,
    act,
    bearer,
    consent_env_fixture,
    grant,
    query,
    terms,
)
from tests.waiting import eventually

CAROL = "079090000003"  # has a tax record
DAVID = "079090000005"  # has a tax record
POPULATION_SERVICE = "VN:GOV:BCA:population/person/v1"

env = consent_env_fixture("consent-exchange", start_servers=True)


def denied_code(env: ConsentEnv, citizen: str, fields: tuple[str, ...] = ()) -> str:
    with pytest.raises(errors.ConsentDeniedError) as info:
        query(env, citizen, fields)
    return info.value.code


def _denied(env: ConsentEnv, citizen: str, code: str) -> bool:
    try:
        query(env, citizen)
    except errors.ConsentDeniedError as exc:
        return exc.code == code
    return False


def _denied_within(env: ConsentEnv, citizen: str, code: str, bound: float) -> None:
    """A query is denied with ``code`` within ``bound`` seconds (polled every 10 ms)."""
    eventually(
        lambda: _denied(env, citizen, code), timeout=bound, interval=0.01, what=f"denied: {code}"
    )


def _allowed_within(env: ConsentEnv, citizen: str, bound: float) -> None:
    eventually(
        lambda: query(env, citizen),
        timeout=bound,
        interval=0.01,
        retry_on=(errors.ConsentDeniedError,),
        what="allowed",
    )


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
    act(env, ALICE, "Approve", pending.id)
    # The approval reaches the provider's cache through the feed, like any change (a query in
    # the same few milliseconds may still meet the cached denial).
    _allowed_within(env, ALICE, 1.0)

    answer = query(env, ALICE)
    assert set(answer.data.fields) == {"annual_income"}  # the agreement also permits tax_year
    assert list(answer.released_fields) == ["annual_income"]
    assert answer.lawful_basis == common_pb2.CONSENT and answer.consent_id == pending.id
    assert denied_code(env, ALICE, ("annual_income", "tax_year")) == "consent_field"

    hits = tax_checker.hits
    query(env, ALICE)
    assert tax_checker.hits > hits  # served from the provider's cache from now on

    act(env, ALICE, "Pause", pending.id)
    _denied_within(env, ALICE, "consent_paused", 1.0)
    act(env, ALICE, "Resume", pending.id)
    _allowed_within(env, ALICE, 1.0)

    query(env, ALICE)  # an allow is cached again
    act(env, ALICE, "Revoke", pending.id)
    # DESIGN §7: a revocation stops access at every security server within one second.
    _denied_within(env, ALICE, "consent_revoked", 1.0)


def test_expired_consent_denies(env: ConsentEnv) -> None:
    # Long enough for the grant and one query on a loaded machine (the provider's clock is the
    # real one), short enough to watch it run out.
    grant(env, CAROL, valid_for=timedelta(seconds=4))
    assert set(query(env, CAROL).data.fields) == {"annual_income"}
    # Nothing changes on the feed when a consent runs out: the cached allow ends with it.
    _denied_within(env, CAROL, "consent_expired", 15.0)


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
