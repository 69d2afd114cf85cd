"""Attacks on consent-based exchanges against real servers: registry, three security servers
with cached consent checkers fed by the change feed, and the consent service (SQLite, or
PostgreSQL when configured).

Token forgery, expiry and audience at the consent API, and a citizen touching another citizen's
consents, are in ``tests/integration/test_consent_service.py``; this module attacks the
exchange: another citizen's consent, fields outside the consent, a consent revoked or paused
while queries race, hostile strings in consent identifiers, and the citizen API's inputs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest

from cdx import errors, rpc
from cdx.v1 import common_pb2, consent_pb2
from tests.integration.consent_env import (
    ALICE,
    BOB,
    CONSENT_PURPOSE,
    SOCIAL,
    TAX,
    TAX_SERVICE,
    ConsentEnv,
    act,
    bearer,
    consent_env_fixture,
    grant,
    query,
    terms,
)
from tests.waiting import eventually

from .fuzzing import HOSTILE_STRINGS

pytestmark = pytest.mark.xdist_group("attack-consent")
CONSENTED = {"annual_income"}


env = consent_env_fixture("attack-consent", start_servers=True)


class Watch:
    def __init__(self, env: ConsentEnv) -> None:
        self.social = env.instance.agency(SOCIAL)
        self.tax = env.instance.agency(TAX)
        self.marks = (self.social.mark(), self.tax.mark())
        self.calls = self.tax.backend.servicer.calls

    def assert_denied(self, code: str) -> None:
        """Provider and consumer both recorded the denial; the backend was never called."""
        consumer = self.social.records_since(self.marks[0])
        provider = self.tax.records_since(self.marks[1])
        assert [r.reason_code for r in provider] == [code]
        assert [r.reason_code for r in consumer] == [code]
        for rec in (*consumer, *provider):
            assert rec.decision == common_pb2.DENY and not rec.released_fields
        assert self.tax.backend.servicer.calls == self.calls


def test_consent_of_another_citizen_releases_nothing(env: ConsentEnv) -> None:
    alices = grant(env, ALICE)
    try:
        assert set(query(env, ALICE).data.fields) == CONSENTED
        watch = Watch(env)
        with pytest.raises(errors.ConsentDeniedError) as caught:
            query(env, BOB, consent_id=alices.id)
        watch.assert_denied(caught.value.code)
    finally:
        act(env, ALICE, "Revoke", alices.id)


def test_fields_outside_the_consent_are_refused(env: ConsentEnv) -> None:
    consent = grant(env, ALICE)
    try:
        watch = Watch(env)
        with pytest.raises(errors.ConsentFieldError):
            query(env, ALICE, ("annual_income", "tax_year"))
        watch.assert_denied("consent_field")
    finally:
        act(env, ALICE, "Revoke", consent.id)


@dataclass
class Racers:
    """Threads querying social -> tax for one citizen, noting when each answer arrived."""

    env: ConsentEnv
    citizen: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, record id)
    refusals: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, code)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = query(self.env, self.citizen)
            except errors.CdxError as exc:
                with self.lock:
                    self.refusals.append((time.monotonic(), exc.code))
                continue
            with self.lock:
                self.answers.append((time.monotonic(), response.provider_record_id))

    def __enter__(self) -> Racers:
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(3)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def refused_after(self, moment: float) -> bool:
        with self.lock:
            return any(t > moment for t, _ in self.refusals)

    def wait_answers(self, count: int, timeout: float = 10.0) -> None:
        def enough() -> bool:
            with self.lock:
                return len(self.answers) >= count

        eventually(enough, timeout=timeout, what=f"{count} answers while the consent was active")


@pytest.mark.parametrize(
    ("action", "code"), [("Revoke", "consent_revoked"), ("Pause", "consent_paused")]
)
def test_consent_withdrawn_while_queries_race_stops_access_within_a_second(
    env: ConsentEnv, action: str, code: str
) -> None:
    consent = grant(env, ALICE)
    tax = env.instance.agency(TAX)
    mark = tax.mark()
    with Racers(env, ALICE) as racers:
        racers.wait_answers(5)
        act(env, ALICE, action, consent.id)
        withdrawn = time.monotonic()
        # The racers go on until one of them is refused more than a second later.
        eventually(
            lambda: racers.refused_after(withdrawn + 1.0),
            timeout=10,
            what="a refusal more than a second after the withdrawal",
        )
    late = [t - withdrawn for t, _ in racers.answers if t > withdrawn + 1.0]
    assert late == [], f"data released {late} s after the consent was withdrawn"
    after = [c for t, c in racers.refusals if t > withdrawn + 1.0]
    assert after and set(after) == {code}, set(after)
    # Every refusal is a recorded denial at the provider; every answer an ALLOW record there.
    recs = tax.records_since(mark)
    allowed = {r.record_id for r in recs if r.decision == common_pb2.ALLOW}
    assert {rid for _, rid in racers.answers} == allowed
    assert all(not r.released_fields for r in recs if r.decision == common_pb2.DENY)
    if action == "Pause":
        act(env, ALICE, "Revoke", consent.id)


@pytest.mark.parametrize("hostile", [s for s in HOSTILE_STRINGS if len(s) < 1000])
def test_hostile_consent_id_in_a_consent_query(env: ConsentEnv, hostile: str) -> None:
    watch = Watch(env)
    with pytest.raises(errors.CdxError) as caught:
        query(env, ALICE, consent_id=hostile)
    assert caught.value.code not in ("internal", "unavailable", "error"), caught.value.code
    if caught.value.code.startswith("consent_"):
        watch.assert_denied(caught.value.code)
    else:  # refused by the consumer before anything left the agency
        assert env.instance.agency(TAX).records_since(watch.marks[1]) == []


#: How the consent API may refuse hostile input: as bad input, or as an unknown or unagreed thing.
REFUSALS = (
    errors.InvalidArgumentError,
    errors.NotFoundError,
    errors.FailedPreconditionError,
    errors.PermissionDeniedError,
)
CITIZEN_ACTIONS = ("Approve", "Reject", "Pause", "Resume", "Revoke", "GetReceipt", "ListEvents")


@pytest.mark.parametrize("action", CITIZEN_ACTIONS)
def test_hostile_consent_ids_at_the_citizen_api(env: ConsentEnv, action: str) -> None:
    token = env.token(ALICE)
    for hostile in HOSTILE_STRINGS:
        with pytest.raises(grpc.RpcError) as caught:
            getattr(env.citizen(), action)(
                consent_pb2.ConsentActionRequest(consent_id=hostile),
                metadata=bearer(token),
                timeout=10,
            )
        err = rpc.error_from_rpc(caught.value)
        assert isinstance(err, REFUSALS), (
            hostile,
            err.code,
        )


def test_hostile_terms_at_the_citizen_api(env: ConsentEnv) -> None:
    token = env.token(ALICE)
    for name in ("grantee", "purpose", "data_from", "data_until"):
        for hostile in HOSTILE_STRINGS:
            t = terms(ALICE)
            setattr(t, name, hostile)
            with pytest.raises(grpc.RpcError) as caught:
                env.citizen().Grant(
                    consent_pb2.GrantRequest(terms=t), metadata=bearer(token), timeout=10
                )
            err = rpc.error_from_rpc(caught.value)
            assert isinstance(err, REFUSALS), (
                name,
                hostile,
                err.code,
            )
    for name in ("services", "fields"):
        for hostile in HOSTILE_STRINGS:
            t = terms(ALICE)
            getattr(t, name).append(hostile)
            with pytest.raises(grpc.RpcError) as caught:
                env.citizen().Grant(
                    consent_pb2.GrantRequest(terms=t), metadata=bearer(token), timeout=10
                )
            err = rpc.error_from_rpc(caught.value)
            assert isinstance(err, REFUSALS), (
                name,
                hostile,
                err.code,
            )
    # Nothing hostile was stored: Alice's consents are all well-formed.
    mine = env.citizen().ListMyConsents(consent_pb2.ListMyConsentsRequest(), metadata=bearer(token))
    for consent in mine.consents:
        assert consent.terms.purpose == CONSENT_PURPOSE


def test_huge_field_list_at_the_consent_api_is_refused(env: ConsentEnv) -> None:
    t = terms(ALICE, fields=[f"f{i}" for i in range(10_000)])
    with pytest.raises(grpc.RpcError) as caught:
        env.citizen().Grant(
            consent_pb2.GrantRequest(terms=t), metadata=bearer(env.token(ALICE)), timeout=10
        )
    assert rpc.error_from_rpc(caught.value).code in ("limit_exceeded", "invalid_argument")
    check = consent_pb2.CheckConsentRequest(
        subject=ALICE,
        client="VN:GOV:VSS:benefits",
        service=TAX_SERVICE,
        purpose=CONSENT_PURPOSE,
        fields=[f"f{i}" for i in range(10_000)],
    )
    with pytest.raises(grpc.RpcError) as caught:
        env.check_api(env.server_identity(TAX)).CheckConsent(check, timeout=10)
    assert rpc.error_from_rpc(caught.value).code in ("limit_exceeded", "invalid_argument")


def test_security_server_cannot_check_consents_for_services_it_does_not_host(
    env: ConsentEnv,
) -> None:
    """The social server asks about the tax service (it would learn who consented to what)."""
    check = consent_pb2.CheckConsentRequest(
        subject=ALICE,
        client="VN:GOV:VSS:benefits",
        service=TAX_SERVICE,
        purpose=CONSENT_PURPOSE,
        fields=["annual_income"],
    )
    with pytest.raises(grpc.RpcError) as caught:
        env.check_api(env.server_identity(SOCIAL)).CheckConsent(check, timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("field", "value"),
    [("valid_until_ms", 2**63 - 1), ("valid_until_ms", -(2**63)), ("valid_from_ms", 2**63 - 1)],
)
def test_absurd_times_in_terms_are_refused_not_a_crash(
    env: ConsentEnv, field: str, value: int
) -> None:
    """Regression (found by fuzzing the citizen API): an int64 time beyond datetime's years
    crashed the consent service with an internal error."""
    t = terms(ALICE)
    setattr(t, field, value)
    with pytest.raises(grpc.RpcError) as caught:
        env.citizen().Grant(
            consent_pb2.GrantRequest(terms=t), metadata=bearer(env.token(ALICE)), timeout=10
        )
    assert rpc.error_from_rpc(caught.value).code not in ("internal", "unavailable")
