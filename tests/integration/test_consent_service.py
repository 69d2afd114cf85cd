"""The consent service over real gRPC/mTLS: lifecycle, isolation, tokens, artefacts, feed.

One instance (registry + agencies' registered servers, not started) and one consent service
per database backend, shared by the module; each test uses its own citizens.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwcrypto import jwk, jws

from cdx import crypto, errors, rpc
from cdx.clock import utcnow
from cdx.tokens import issue_token
from cdx.v1 import consent_pb2
from tests.integration.consent_env import (
    CONSENT_PURPOSE,
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX,
    TAX_SERVICE,
    ConsentEnv,
    act,
    bearer,
    consent_env_fixture,
    fresh_citizen,
    grant,
    request_consent,
    terms,
)
from tests.waiting import eventually

env = consent_env_fixture("consent-service")


def code_of(exc: grpc.RpcError) -> str:
    return rpc.error_from_rpc(exc).code


def consent_public_key(env: ConsentEnv) -> ed25519.Ed25519PublicKey:
    der = env.conf_client.current().consent_service_key_der
    key = crypto.public_key_from_der(der)
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return key


# --- lifecycle -----------------------------------------------------------------------------------


def test_requested_consent_is_approved_paused_resumed_and_revoked(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    pending = request_consent(env, alice)
    assert pending.state == consent_pb2.PENDING
    assert pending.artefact == "" and pending.requested_by == SOCIAL_SUBSYSTEM

    listed = env.citizen().ListMyConsents(
        consent_pb2.ListMyConsentsRequest(states=[consent_pb2.PENDING]),
        metadata=bearer(env.token(alice)),
    )
    assert [c.id for c in listed.consents] == [pending.id]

    active = act(env, alice, "Approve", pending.id)
    assert active.state == consent_pb2.ACTIVE and active.artefact
    assert act(env, alice, "Pause", pending.id).state == consent_pb2.PAUSED
    assert act(env, alice, "Resume", pending.id).state == consent_pb2.ACTIVE
    revoked = act(env, alice, "Revoke", pending.id)
    assert revoked.state == consent_pb2.REVOKED
    assert revoked.version == 5

    with pytest.raises(grpc.RpcError) as info:
        act(env, alice, "Resume", pending.id)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(info.value) == "invalid_transition"

    history = env.citizen().ListEvents(
        consent_pb2.ConsentActionRequest(consent_id=pending.id), metadata=bearer(env.token(alice))
    )
    assert [(e.action, e.actor) for e in history.events] == [
        ("requested", SOCIAL_SUBSYSTEM),
        ("approved", "citizen"),
        ("paused", "citizen"),
        ("resumed", "citizen"),
        ("revoked", "citizen"),
    ]
    assert all(alice not in e.subject_tag for e in history.events)


def test_citizen_rejects_a_request_and_grants_directly(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    pending = request_consent(env, alice)
    assert act(env, alice, "Reject", pending.id).state == consent_pb2.REJECTED
    with pytest.raises(grpc.RpcError) as info:
        act(env, alice, "Approve", pending.id)
    assert code_of(info.value) == "invalid_transition"
    granted = grant(env, alice, fields=["annual_income", "tax_year"])
    assert granted.state == consent_pb2.ACTIVE and granted.artefact
    assert granted.requested_by == ""


def test_artefact_verifies_with_independent_jose_libraries(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice, fields=["annual_income", "tax_year"], max_uses=3)
    public = consent_public_key(env)
    # PyJWT
    claims = jwt.decode(consent.artefact, public, algorithms=["EdDSA"])
    assert claims["consent_id"] == consent.id == claims["jti"]
    assert claims["sub"] == alice
    assert claims["grantee"] == SOCIAL_SUBSYSTEM
    assert claims["services"] == [TAX_SERVICE]
    assert claims["purpose"] == CONSENT_PURPOSE
    assert claims["fields"] == ["annual_income", "tax_year"]
    assert claims["max_uses"] == 3 and claims["data_from"] == "2020-01-01"
    assert claims["supersedes"] == ""
    header = jwt.get_unverified_header(consent.artefact)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == crypto.key_id(public)
    # jwcrypto, from the raw key as a JWK (RFC 8037 OKP)
    key = jwk.JWK.from_pem(crypto.public_key_to_pem(public))
    token = jws.JWS()
    token.deserialize(consent.artefact)
    token.verify(key, alg="EdDSA")
    assert json.loads(token.payload)["consent_id"] == consent.id
    # a tampered artefact does not verify
    head, _body, sig = consent.artefact.split(".")
    forged = dict(claims, fields=["annual_income", "tax_year", "employer"])
    import base64

    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{forged_body}.{sig}", public, algorithms=["EdDSA"])


def test_amendment_issues_a_new_artefact_that_supersedes_the_old(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    old = grant(env, alice, fields=["annual_income", "tax_year"])
    new = env.citizen().Amend(
        consent_pb2.AmendRequest(consent_id=old.id, terms=terms(alice, fields=["tax_year"])),
        metadata=bearer(env.token(alice)),
    )
    assert new.id != old.id and new.supersedes == old.id and new.state == consent_pb2.ACTIVE
    claims = jwt.decode(new.artefact, consent_public_key(env), algorithms=["EdDSA"])
    assert claims["supersedes"] == old.id and claims["fields"] == ["tax_year"]
    mine = env.citizen().ListMyConsents(
        consent_pb2.ListMyConsentsRequest(), metadata=bearer(env.token(alice))
    )
    states = {c.id: c.state for c in mine.consents}
    assert states == {old.id: consent_pb2.REVOKED, new.id: consent_pb2.ACTIVE}
    # the old artefact is unchanged (never edited)
    assert next(c for c in mine.consents if c.id == old.id).artefact == old.artefact


def test_receipt_is_a_signed_27560_record(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice)
    act(env, alice, "Pause", consent.id)
    receipt = env.citizen().GetReceipt(
        consent_pb2.ConsentActionRequest(consent_id=consent.id), metadata=bearer(env.token(alice))
    )
    record = json.loads(receipt.json)
    assert record["schema_version"] == "ISO/IEC TS 27560:2023"
    assert record["record_id"] == consent.id
    assert record["pii_principal_id"] == alice
    assert record["consent_state"].startswith("given") and record["cdx_state"] == "PAUSED"
    assert record["pii_controllers"][0]["controller_id"] == SOCIAL_SUBSYSTEM
    assert record["purposes"][0]["purpose_id"] == CONSENT_PURPOSE
    assert record["purposes"][0]["pii_categories"] == ["annual_income"]
    assert [e["event_type"] for e in record["events"]] == ["granted", "paused"]
    assert record["consent_artefact"] == consent.artefact
    verified = jwt.decode(receipt.jws, consent_public_key(env), algorithms=["EdDSA"])
    assert verified == record


# --- who may do what -----------------------------------------------------------------------------


def test_citizen_cannot_see_or_change_another_citizens_consents(env: ConsentEnv) -> None:
    alice, bob = fresh_citizen(), fresh_citizen()
    consent = grant(env, alice)
    request_consent(env, alice)
    mine = env.citizen().ListMyConsents(
        consent_pb2.ListMyConsentsRequest(), metadata=bearer(env.token(bob))
    )
    assert mine.consents == []
    for name in ("Approve", "Reject", "Pause", "Resume", "Revoke", "GetReceipt", "ListEvents"):
        with pytest.raises(grpc.RpcError) as info:
            act(env, bob, name, consent.id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, name
    with pytest.raises(grpc.RpcError) as info:
        env.citizen().Amend(
            consent_pb2.AmendRequest(consent_id=consent.id, terms=terms(bob)),
            metadata=bearer(env.token(bob)),
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # nor grant in someone else's name
    with pytest.raises(grpc.RpcError) as info:
        env.citizen().Grant(
            consent_pb2.GrantRequest(terms=terms(alice)), metadata=bearer(env.token(bob))
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    still = act(env, alice, "ListEvents", consent.id)
    assert [e.action for e in still.events] == ["granted"]


def test_agency_cannot_approve_a_consent(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    pending = request_consent(env, alice)
    for identity in (env.server_identity(SOCIAL), env.client_identity(SOCIAL)):
        stub = env.citizen(identity)
        with pytest.raises(grpc.RpcError) as info:
            stub.Approve(consent_pb2.ConsentActionRequest(consent_id=pending.id))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # an inspector's token is not a citizen's
    inspector = env.token("dpa-inspector-1", role="inspector")
    with pytest.raises(grpc.RpcError) as info:
        env.citizen().Approve(
            consent_pb2.ConsentActionRequest(consent_id=pending.id), metadata=bearer(inspector)
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = env.citizen().ListMyConsents(
        consent_pb2.ListMyConsentsRequest(), metadata=bearer(env.token(alice))
    )
    assert [c.state for c in listed.consents] == [consent_pb2.PENDING]


def test_agency_sees_only_consents_granted_to_it(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice)
    social = env.agency_api(env.client_identity(SOCIAL))  # the information system's own cert
    tax = env.agency_api(env.server_identity(TAX))
    got = social.GetConsent(consent_pb2.ConsentActionRequest(consent_id=consent.id))
    assert got.terms.subject == alice and got.state == consent_pb2.ACTIVE
    granted = social.ListGranted(
        consent_pb2.ListGrantedRequest(grantee=SOCIAL_SUBSYSTEM, subject=alice)
    )
    assert [c.id for c in granted.consents] == [consent.id]
    with pytest.raises(grpc.RpcError) as info:
        tax.GetConsent(consent_pb2.ConsentActionRequest(consent_id=consent.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        tax.ListGranted(consent_pb2.ListGrantedRequest(grantee=SOCIAL_SUBSYSTEM))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # nor request consent in another agency's name
    with pytest.raises(grpc.RpcError) as info:
        tax.RequestConsent(
            consent_pb2.RequestConsentRequest(requester=SOCIAL_SUBSYSTEM, terms=terms(alice))
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"services": ["VN:GOV:GDT:income/nothing/v1"]}, "NOT_FOUND", "unknown_service"),
        ({"fields": ["employer_secret"]}, "INVALID_ARGUMENT", "invalid_argument"),
        ({"purpose": "TAX_ASSESSMENT"}, "FAILED_PRECONDITION", "failed_precondition"),
        ({"valid_for": timedelta(seconds=-5)}, "INVALID_ARGUMENT", "invalid_argument"),
        ({"max_uses": 10**7}, "INVALID_ARGUMENT", "limit_exceeded"),
    ],
)
def test_invalid_terms_are_refused(
    env: ConsentEnv, overrides: dict[str, Any], status: str, code: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        request_consent(env, fresh_citizen(), **overrides)
    assert info.value.code().name == status
    assert code_of(info.value) == code


# --- tokens --------------------------------------------------------------------------------------


def test_forged_expired_and_foreign_tokens_are_refused(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    grant(env, alice)
    forger = ed25519.Ed25519PrivateKey.generate()
    now = utcnow()
    # Forged: the provider's own claims and key id, signed by another key.
    genuine = env.token(alice)
    forged = jwt.encode(
        jwt.decode(genuine, options={"verify_signature": False}),
        forger,
        algorithm="EdDSA",
        headers={"kid": jwt.get_unverified_header(genuine)["kid"], "typ": "JWT"},
    )
    cases = {
        "forged": forged,
        "expired": env.token(alice, now=now - timedelta(hours=1), ttl=timedelta(minutes=5)),
        "other audience": issue_token(
            env.idp.key, env.issuer, alice, "citizen", "urn:cdx:XX", now, timedelta(minutes=5)
        ),
        "garbage": "not-a-token",
    }
    expected = {
        "forged": "token_signature_invalid",
        "expired": "token_expired",
        "other audience": "token_wrong_audience",
        "garbage": "invalid_token",
    }
    for name, token in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            env.citizen().ListMyConsents(
                consent_pb2.ListMyConsentsRequest(), metadata=bearer(token)
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert code_of(info.value) == expected[name], name
        assert alice not in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        env.citizen().ListMyConsents(consent_pb2.ListMyConsentsRequest())
    assert code_of(info.value) == "unauthenticated"


# --- enforcement API -----------------------------------------------------------------------------


def check(
    env: ConsentEnv, server: str, subject: str, **kw: Any
) -> consent_pb2.CheckConsentResponse:
    request = consent_pb2.CheckConsentRequest(
        subject=subject,
        client=SOCIAL_SUBSYSTEM,
        service=TAX_SERVICE,
        purpose=CONSENT_PURPOSE,
        fields=kw.pop("fields", ["annual_income"]),
        **kw,
    )
    return env.check_api(env.server_identity(server)).CheckConsent(request, timeout=10)  # type: ignore[no-any-return]


def test_check_answers_only_the_server_hosting_the_service(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice)
    allowed = check(env, TAX, alice)
    assert allowed.allowed and allowed.consent_id == consent.id
    assert list(allowed.allowed_fields) == ["annual_income"] and not allowed.limited
    denied = check(env, TAX, alice, fields=["annual_income", "tax_year"])
    assert not denied.allowed and denied.deny_code == "consent_field"
    partial = check(env, TAX, alice, fields=["annual_income", "tax_year"], partial_fields=True)
    assert partial.allowed and list(partial.allowed_fields) == ["annual_income"]
    with pytest.raises(grpc.RpcError) as info:
        check(env, SOCIAL, alice)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    client_only = env.check_api(env.client_identity(TAX))
    with pytest.raises(grpc.RpcError) as info:
        client_only.CheckConsent(
            consent_pb2.CheckConsentRequest(
                subject=alice, client=SOCIAL_SUBSYSTEM, service=TAX_SERVICE, purpose=CONSENT_PURPOSE
            )
        )
    assert code_of(info.value) == "peer_not_registered"


def test_counted_uses_are_spent_atomically(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice, max_uses=5)
    results: queue.Queue[consent_pb2.CheckConsentResponse] = queue.Queue()

    def worker() -> None:
        for _ in range(4):
            try:
                results.put(check(env, TAX, alice, record_use=True))
            except grpc.RpcError as exc:  # counted as a failure below, never a hang
                results.put(consent_pb2.CheckConsentResponse(deny_code=code_of(exc)))

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = [results.get(timeout=10) for _ in range(20)]
    assert sum(a.allowed for a in answers) == 5
    assert all(a.limited for a in answers if a.allowed)
    assert {a.deny_code for a in answers if not a.allowed} == {"consent_uses_exhausted"}
    mine = env.citizen().ListMyConsents(
        consent_pb2.ListMyConsentsRequest(), metadata=bearer(env.token(alice))
    )
    assert [c.uses for c in mine.consents if c.id == consent.id] == [5]


def test_change_feed_pushes_changes_to_hosting_servers_only(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice)
    tax_stream = env.check_api(env.server_identity(TAX)).WatchChanges(
        consent_pb2.WatchChangesRequest()
    )
    social_stream = env.check_api(env.server_identity(SOCIAL)).WatchChanges(
        consent_pb2.WatchChangesRequest()
    )
    try:
        first = next(tax_stream)
        assert first.heartbeat
        assert next(social_stream).heartbeat
        started = time.monotonic()
        act(env, alice, "Revoke", consent.id)
        change = next(tax_stream)
        while change.heartbeat or change.state != consent_pb2.REVOKED:
            change = next(tax_stream)
        elapsed = time.monotonic() - started
        assert change.consent_id == consent.id and change.state == consent_pb2.REVOKED
        assert change.grantee == SOCIAL_SUBSYSTEM and change.action == "revoked"
        assert change.seq > first.seq and change.subject_tag == ""  # no cross-agency linking
        assert elapsed < 1.0
        # the social server hosts no consented service: it sees heartbeats only
        nxt = next(social_stream)
        assert nxt.heartbeat and nxt.seq >= change.seq
    finally:
        tax_stream.cancel()
        social_stream.cancel()


def test_change_feed_resumes_after_a_position(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice)
    api = env.check_api(env.server_identity(TAX))
    stream = api.WatchChanges(consent_pb2.WatchChangesRequest())
    position = next(stream).seq
    stream.cancel()
    act(env, alice, "Pause", consent.id)  # happens while nobody listens
    act(env, alice, "Resume", consent.id)
    resumed = api.WatchChanges(consent_pb2.WatchChangesRequest(after_seq=position))
    try:
        seen = []
        for change in resumed:
            if change.heartbeat:
                break
            seen.append((change.consent_id, change.action))
        assert seen[-2:] == [(consent.id, "paused"), (consent.id, "resumed")]
    finally:
        resumed.cancel()


# --- storage -------------------------------------------------------------------------------------


def test_consent_events_are_append_only(env: ConsentEnv) -> None:
    grant(env, fresh_citizen())
    engine = env.consent.service._engine
    for statement in ("UPDATE consent_events SET actor = 'x'", "DELETE FROM consent_events"):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM consent_events").scalar()


def test_consent_expires_by_time_with_an_event(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice, valid_for=timedelta(seconds=1))
    assert check(env, TAX, alice).allowed

    def state() -> int:
        listed = env.citizen().ListMyConsents(
            consent_pb2.ListMyConsentsRequest(), metadata=bearer(env.token(alice))
        )
        return int(listed.consents[0].state)

    eventually(lambda: state() == consent_pb2.EXPIRED, timeout=5, what="the consent expired")
    denied = check(env, TAX, alice)
    assert not denied.allowed and denied.deny_code == "consent_expired"
    history = act(env, alice, "ListEvents", consent.id)
    assert [(e.action, e.actor) for e in history.events] == [
        ("granted", "citizen"),
        ("expired", "system"),
    ]


def test_event_hook_sees_every_change_without_national_ids(env: ConsentEnv) -> None:
    alice = fresh_citizen()
    consent = grant(env, alice)
    act(env, alice, "Revoke", consent.id)
    mine = [e for e in env.events if e.consent_id == consent.id]
    assert [e.action for e in mine] == ["granted", "revoked"]
    assert all(alice not in repr(e) for e in mine)


def test_unexpected_errors_do_not_leak(env: ConsentEnv) -> None:
    with pytest.raises(grpc.RpcError) as info:
        env.citizen().Approve(
            consent_pb2.ConsentActionRequest(consent_id="x" * 500),
            metadata=bearer(env.token(fresh_citizen())),
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert isinstance(rpc.error_from_rpc(info.value), errors.NotFoundError)


def test_a_subscriber_resuming_at_position_zero_gets_every_change(env: ConsentEnv) -> None:
    """A cache that was told the feed stood at 0 (a new instance) and lost its stream must get
    every change made since, not be treated as a new subscriber starting from the head: that
    would skip a revocation made while it reconnected."""
    alice = fresh_citizen()
    consent = grant(env, alice)
    api = env.check_api(env.server_identity(TAX))
    resumed = api.WatchChanges(consent_pb2.WatchChangesRequest(after_seq=0, resume=True))
    fresh = api.WatchChanges(consent_pb2.WatchChangesRequest(after_seq=0))
    try:
        seen = []
        for change in resumed:
            if change.heartbeat:
                break
            seen.append((change.consent_id, change.action))
        assert (consent.id, "granted") in seen
        # a new subscriber (empty cache) starts from the head: nothing to replay
        assert next(fresh).heartbeat
    finally:
        resumed.cancel()
        fresh.cancel()
