"""Unit tests for cdx.consentpolicy: the consent decision and the consent lifecycle."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx import errors
from cdx.consentpolicy import (
    Allow,
    ConsentAction,
    ConsentState,
    ConsentTerms,
    ConsentView,
    check_terms,
    deny_error,
    evaluate,
    transition,
)
from cdx.ids import CitizenId

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE = CitizenId("001234567890")
BOB = CitizenId("009876543210")
CLIENT = "VN:GOV:VSS:benefits"
OTHER_CLIENT = "VN:GOV:GDT:income"
SERVICE = "VN:GOV:BCA:population/person/v1"
OTHER_SERVICE = "VN:GOV:GDT:income/income/v1"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"


def terms(**overrides: object) -> ConsentTerms:
    base = ConsentTerms(
        subject=ALICE,
        grantee=CLIENT,
        services=(SERVICE,),
        purpose=PURPOSE,
        fields=frozenset({"name", "birth_date"}),
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=30),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def consent(
    cid: str = "c1", state: ConsentState = ConsentState.ACTIVE, uses: int = 0, **kw: object
) -> ConsentView:
    return ConsentView(cid, state, terms(**kw), uses)


def decide(consents: list[ConsentView], **kw: object) -> Allow:
    args: dict[str, object] = {
        "subject": ALICE,
        "client": CLIENT,
        "service": SERVICE,
        "purpose": PURPOSE,
        "fields": ["name"],
        "now": NOW,
    }
    args.update(kw)
    return evaluate(consents, **args)  # type: ignore[arg-type]


# --- evaluate: allow ---------------------------------------------------------------------------


def test_active_consent_allows_the_requested_fields_only() -> None:
    allow = decide([consent()])
    assert allow.consent_id == "c1"
    assert allow.allowed_fields == frozenset({"name"})
    assert not allow.limited


def test_empty_field_request_gets_every_consented_field() -> None:
    allow = decide([consent()], fields=[])
    assert allow.allowed_fields == frozenset({"name", "birth_date"})


def test_unlimited_consent_is_preferred_over_a_counted_one() -> None:
    counted = consent("a-counted", max_uses=3)
    unlimited = consent("z-unlimited")
    assert decide([counted, unlimited]).consent_id == "z-unlimited"
    assert decide([counted]).limited


def test_explicit_consent_id_restricts_the_choice() -> None:
    first, second = consent("c1"), consent("c2")
    assert decide([first, second], consent_id="c2").consent_id == "c2"
    with pytest.raises(errors.ConsentDeniedError) as info:
        decide([first], consent_id="c9")
    assert type(info.value) is errors.ConsentDeniedError


def test_data_range_and_retention_travel_with_the_allow() -> None:
    allow = decide([consent(data_from=date(2020, 1, 1), retention_days=90)])
    assert allow.data_from == date(2020, 1, 1)
    assert allow.retention_days == 90


# --- evaluate: each deny reason ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "kw", "error", "code"),
    [
        (None, {}, errors.ConsentDeniedError, "consent_missing"),
        (consent(state=ConsentState.PENDING), {}, errors.ConsentDeniedError, "consent_missing"),
        (consent(state=ConsentState.REJECTED), {}, errors.ConsentDeniedError, "consent_missing"),
        (consent(subject=BOB), {}, errors.ConsentDeniedError, "consent_missing"),
        (consent(grantee=OTHER_CLIENT), {}, errors.ConsentDeniedError, "consent_missing"),
        (
            consent(valid_from=NOW + timedelta(hours=1)),
            {},
            errors.ConsentDeniedError,
            "consent_missing",
        ),
        (consent(state=ConsentState.PAUSED), {}, errors.ConsentPausedError, "consent_paused"),
        (consent(state=ConsentState.REVOKED), {}, errors.ConsentRevokedError, "consent_revoked"),
        (consent(state=ConsentState.EXPIRED), {}, errors.ConsentExpiredError, "consent_expired"),
        (consent(valid_until=NOW), {}, errors.ConsentExpiredError, "consent_expired"),
        (consent(purpose="TAX_AUDIT"), {}, errors.ConsentPurposeError, "consent_purpose"),
        (
            consent(services=(OTHER_SERVICE,)),
            {},
            errors.ConsentPurposeError,
            "consent_purpose",
        ),
        (consent(), {"fields": ["name", "address"]}, errors.ConsentFieldError, "consent_field"),
        (
            consent(max_uses=2, uses=2),
            {},
            errors.ConsentExhaustedError,
            "consent_uses_exhausted",
        ),
    ],
)
def test_each_deny_reason_raises_its_error(
    view: ConsentView | None, kw: dict[str, object], error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        decide([view] if view else [], **kw)
    assert type(info.value) is error
    assert info.value.code == code  # type: ignore[attr-defined]
    assert info.value.status.name == "PERMISSION_DENIED"  # type: ignore[attr-defined]


def test_denial_names_the_consent_and_never_the_subject() -> None:
    with pytest.raises(errors.ConsentPausedError) as info:
        decide([consent("c-77", state=ConsentState.PAUSED)])
    assert info.value.consent_id == "c-77"  # type: ignore[attr-defined]
    assert ALICE.value not in str(info.value)


def test_closest_consent_names_the_reason() -> None:
    revoked = consent("old", state=ConsentState.REVOKED)
    paused = consent("new", state=ConsentState.PAUSED)
    with pytest.raises(errors.ConsentPausedError):
        decide([revoked, paused])
    with pytest.raises(errors.ConsentRevokedError):
        decide([revoked, consent("other", purpose="TAX_AUDIT")])


def test_one_usable_consent_wins_over_denied_ones() -> None:
    views = [consent("r", state=ConsentState.REVOKED), consent("ok"), consent("p", purpose="X")]
    assert decide(views).consent_id == "ok"


def test_counted_consent_allows_until_the_last_use() -> None:
    assert decide([consent(max_uses=3, uses=2)]).limited
    with pytest.raises(errors.ConsentExhaustedError):
        decide([consent(max_uses=3, uses=3)])


def test_deny_error_maps_codes_back() -> None:
    assert type(deny_error("consent_paused")) is errors.ConsentPausedError
    assert type(deny_error("consent_uses_exhausted")) is errors.ConsentExhaustedError
    assert type(deny_error("something_else")) is errors.ConsentDeniedError


@given(
    requested=st.frozensets(st.sampled_from(["name", "birth_date", "address", "income"])),
    state=st.sampled_from(list(ConsentState)),
    offset=st.integers(min_value=-40, max_value=40),
)
def test_allow_never_exceeds_the_consent(
    requested: frozenset[str], state: ConsentState, offset: int
) -> None:
    view = consent(state=state)
    now = NOW + timedelta(days=offset)
    try:
        allow = decide([view], fields=requested, now=now)
    except errors.ConsentDeniedError:
        return
    assert state is ConsentState.ACTIVE
    assert view.terms.valid_from <= now < view.terms.valid_until
    assert allow.allowed_fields <= view.terms.fields
    assert allow.allowed_fields == (requested or view.terms.fields)


# --- transitions -------------------------------------------------------------------------------

ALLOWED = {
    (None, ConsentAction.REQUEST): ConsentState.PENDING,
    (None, ConsentAction.GRANT): ConsentState.ACTIVE,
    (ConsentState.PENDING, ConsentAction.APPROVE): ConsentState.ACTIVE,
    (ConsentState.PENDING, ConsentAction.REJECT): ConsentState.REJECTED,
    (ConsentState.PENDING, ConsentAction.EXPIRE): ConsentState.EXPIRED,
    (ConsentState.ACTIVE, ConsentAction.PAUSE): ConsentState.PAUSED,
    (ConsentState.ACTIVE, ConsentAction.REVOKE): ConsentState.REVOKED,
    (ConsentState.ACTIVE, ConsentAction.EXPIRE): ConsentState.EXPIRED,
    (ConsentState.ACTIVE, ConsentAction.SUPERSEDE): ConsentState.REVOKED,
    (ConsentState.PAUSED, ConsentAction.RESUME): ConsentState.ACTIVE,
    (ConsentState.PAUSED, ConsentAction.REVOKE): ConsentState.REVOKED,
    (ConsentState.PAUSED, ConsentAction.EXPIRE): ConsentState.EXPIRED,
    (ConsentState.PAUSED, ConsentAction.SUPERSEDE): ConsentState.REVOKED,
}


@pytest.mark.parametrize("state", [None, *ConsentState])
@pytest.mark.parametrize("action", list(ConsentAction))
def test_transition_table(state: ConsentState | None, action: ConsentAction) -> None:
    expected = ALLOWED.get((state, action))
    if expected is None:
        with pytest.raises(errors.InvalidTransitionError):
            transition(state, action)
    else:
        assert transition(state, action) is expected


def test_final_states_admit_no_change() -> None:
    for state in (ConsentState.REVOKED, ConsentState.EXPIRED, ConsentState.REJECTED):
        assert state.final
        for action in ConsentAction:
            with pytest.raises(errors.InvalidTransitionError):
                transition(state, action)
    assert not ConsentState.PAUSED.final


# --- terms validation --------------------------------------------------------------------------


def test_check_terms_normalises() -> None:
    raw = terms(
        services=(SERVICE, SERVICE),
        valid_until=NOW + timedelta(days=3, microseconds=123),
    )
    checked = check_terms(raw, now=NOW)
    assert checked.services == (SERVICE,)
    assert checked.valid_until.microsecond == 0


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"grantee": "not-a-subsystem"}, errors.InvalidIdentifierError),
        ({"services": ()}, errors.InvalidArgumentError),
        ({"services": ("VN:GOV:BCA:population",)}, errors.InvalidIdentifierError),
        ({"services": tuple(f"VN:GOV:BCA:p/s{i}" for i in range(40))}, errors.LimitExceededError),
        ({"purpose": ""}, errors.InvalidArgumentError),
        ({"purpose": "has space"}, errors.InvalidArgumentError),
        ({"fields": frozenset()}, errors.InvalidArgumentError),
        ({"fields": frozenset({"bad field"})}, errors.InvalidArgumentError),
        ({"fields": frozenset(f"f{i}" for i in range(200))}, errors.LimitExceededError),
        ({"valid_until": NOW - timedelta(seconds=1)}, errors.InvalidArgumentError),
        ({"valid_until": NOW - timedelta(days=2)}, errors.InvalidArgumentError),
        ({"valid_until": NOW + timedelta(days=5 * 400)}, errors.LimitExceededError),
        ({"valid_until": datetime(2026, 4, 1)}, errors.InvalidArgumentError),
        (
            {"data_from": date(2024, 1, 2), "data_until": date(2024, 1, 1)},
            errors.InvalidArgumentError,
        ),
        ({"max_uses": -1}, errors.LimitExceededError),
        ({"max_uses": 10**7}, errors.LimitExceededError),
        ({"retention_days": 10**6}, errors.LimitExceededError),
    ],
)
def test_bad_terms_are_refused(overrides: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        check_terms(terms(**overrides), now=NOW)


# --- partial field coverage (a request that named no fields) -----------------------------------


def test_partial_mode_minimises_to_the_consented_fields() -> None:
    allow = decide([consent()], fields=["name", "address", "income"], partial=True)
    assert allow.allowed_fields == frozenset({"name"})
    with pytest.raises(errors.ConsentFieldError):
        decide([consent()], fields=["address"], partial=True)


def test_consent_covering_more_requested_fields_wins() -> None:
    narrow = consent("narrow", fields=frozenset({"name"}))
    wide = consent("wide", fields=frozenset({"name", "address"}), max_uses=5)
    allow = decide([narrow, wide], fields=["name", "address"], partial=True)
    assert allow.consent_id == "wide"
    assert decide([narrow, wide], fields=["address"]).consent_id == "wide"
