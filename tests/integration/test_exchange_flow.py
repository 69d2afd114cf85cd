"""Allowed exchanges between three agencies on loopback: minimisation, receipts, records."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cdx import crypto, errors, records
from cdx.lawful import ConsentGrant
from cdx.v1 import audit_pb2, common_pb2
from security_server.backends.sample import CITIZENS, INCOME, UNKNOWN_CITIZEN
from tests.integration.exchange_harness import ExchangeInstance, build_instance

ANNE, BINH = CITIZENS[0], CITIZENS[1]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


class OneConsent:
    """Consent checker double: BINH consented to social reading annual_income only."""

    def __init__(self) -> None:
        self.calls = 0

    def check(
        self,
        *,
        subject: str,
        client: str,
        service: str,
        purpose: str,
        fields: Sequence[str],
        consent_id: str | None,
        now: datetime,
    ) -> ConsentGrant:
        self.calls += 1
        if subject == BINH.id and client == "VN:GOV:VSS:benefits" and purpose == BENEFIT:
            return ConsentGrant("consent-binh-1", frozenset({"annual_income"}))
        raise errors.ConsentDeniedError()


@contextlib.contextmanager
def own_instance(root: Path) -> Iterator[ExchangeInstance]:
    inst = build_instance(root, consent_checkers={"tax": OneConsent()})
    try:
        yield inst
    finally:
        inst.close()


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeInstance]:
    """Shared by the module: a test that changes an instance builds its own (``own_instance``)."""
    with own_instance(tmp_path_factory.mktemp("exchange-flow")) as inst:
        yield inst


def test_allowed_query_returns_only_the_agreements_fields(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    response = social.query(population.service, ANNE.id, BENEFIT)
    data = dict(response.data.fields)
    # The backend returned the whole row (address, household_id too); the agreement permits
    # full_name, birth_date and gender only.
    assert set(data) == {"full_name", "birth_date", "gender"}
    assert data["full_name"].string_value == ANNE.full_name
    assert data["birth_date"].string_value == ANNE.birth_date
    assert list(response.released_fields) == ["birth_date", "full_name", "gender"]
    assert response.lawful_basis == common_pb2.LEGAL_OBLIGATION
    assert response.legal_reference == "Law on Social Insurance 2024, Art. 10"
    assert response.record_id and response.provider_record_id and response.message_id


def test_requested_subset_is_all_that_is_released(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    response = social.query(population.service, ANNE.id, BENEFIT, ["full_name"])
    assert set(response.data.fields) == {"full_name"}


def test_both_servers_record_a_signed_allow_without_personal_data(
    instance: ExchangeInstance,
) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    consumer_mark, provider_mark = social.mark(), population.mark()
    response = social.query(population.service, ANNE.id, BENEFIT)
    (mine,) = social.records_since(consumer_mark)
    (theirs,) = population.records_since(provider_mark)
    assert mine.record_id == response.record_id
    assert theirs.record_id == response.provider_record_id
    for rec, recorder, role in (
        (mine, social.server_id, common_pb2.CONSUMER),
        (theirs, population.server_id, common_pb2.PROVIDER),
    ):
        assert rec.message_id == response.message_id
        assert rec.recorder == recorder and rec.role == role
        assert rec.decision == common_pb2.ALLOW and rec.reason_code == "ok"
        assert list(rec.released_fields) == ["birth_date", "full_name", "gender"]
        assert rec.client == social.subsystem and rec.service == population.service
        assert rec.purpose == BENEFIT and rec.lawful_basis == common_pb2.LEGAL_OBLIGATION
        assert len(rec.subject_commitment) == 32 and len(rec.response_commitment) == 32
    # The signature verifies under the recorder's registered key (as the audit log will check).
    conf = social.running.conf_client.current()
    for agency, rec in ((social, mine), (population, theirs)):
        signed = agency.running.outbox.get(rec.record_id)
        assert signed is not None
        key = conf.servers[agency.server_id].signing_public_key
        assert records.verify_access_record(signed, key).record_id == rec.record_id
        raw = signed.SerializeToString()
        for secret in (ANNE.id, ANNE.full_name, ANNE.birth_date):
            assert secret.encode() not in raw
    # The openings (kept encrypted in the outbox) open the subject commitments of both sides,
    # and both sides committed to the same request and response bodies.
    openings = {
        item.opening.record_id: item.opening
        for agency in (social, population)
        for item in agency.running.outbox.pending(100_000)
    }
    for rec in (mine, theirs):
        opening = openings[rec.record_id]
        assert opening.subject == ANNE.id
        assert crypto.commitment(opening.subject_salt, ANNE.id.encode()) == rec.subject_commitment
    assert theirs.request_commitment != mine.request_commitment  # different salts...
    op_mine, op_theirs = openings[mine.record_id], openings[theirs.record_id]
    from security_server.records import request_value

    value = request_value(ANNE.id, None)
    assert crypto.commitment(op_mine.request_salt, value) == mine.request_commitment
    assert crypto.commitment(op_theirs.request_salt, value) == theirs.request_commitment


def test_token_gateway_authenticates_the_subsystem(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    response = social.query(population.service, ANNE.id, BENEFIT, via="token")
    assert set(response.data.fields) == {"full_name", "birth_date", "gender"}


def test_wrong_token_is_unauthenticated(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    with pytest.raises(errors.UnauthenticatedError):
        social.query(population.service, ANNE.id, BENEFIT, via="token", token="not-the-token")


def test_credentials_of_one_subsystem_cannot_query_as_another(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    mark = social.mark()
    with pytest.raises(errors.PermissionDeniedError):
        social.query(population.service, ANNE.id, BENEFIT, client="VN:GOV:GDT:income")
    (rec,) = social.records_since(mark)
    assert rec.decision == common_pb2.DENY and rec.reason_code == "permission_denied"


def test_unknown_subject_is_not_found_and_recorded_on_both_sides(
    instance: ExchangeInstance,
) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    consumer_mark, provider_mark = social.mark(), population.mark()
    with pytest.raises(errors.NotFoundError):
        social.query(population.service, UNKNOWN_CITIZEN, BENEFIT)
    (mine,) = social.records_since(consumer_mark)
    (theirs,) = population.records_since(provider_mark)
    assert (mine.decision, mine.reason_code) == (common_pb2.DENY, "not_found")
    assert (theirs.decision, theirs.reason_code) == (common_pb2.DENY, "not_found")
    assert not theirs.released_fields and not theirs.response_commitment


def test_malformed_subject_is_refused_before_leaving_the_agency(
    instance: ExchangeInstance,
) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    provider_mark = population.mark()
    with pytest.raises(errors.InvalidCitizenIdError):
        social.query(population.service, "12345", BENEFIT)
    assert population.records_since(provider_mark) == []


def test_consent_agreement_releases_the_consented_fields_only(
    instance: ExchangeInstance,
) -> None:
    social, tax = instance.agency("social"), instance.agency("tax")
    response = social.query(tax.service, BINH.id, BENEFIT)
    assert set(response.data.fields) == {"annual_income"}
    assert response.data.fields["annual_income"].number_value == INCOME[BINH.id][0]
    assert response.lawful_basis == common_pb2.CONSENT
    assert response.consent_id == "consent-binh-1"


def test_consent_agreement_without_consent_is_denied(instance: ExchangeInstance) -> None:
    social, tax = instance.agency("social"), instance.agency("tax")
    mark = tax.mark()
    with pytest.raises(errors.ConsentDeniedError) as caught:
        social.query(tax.service, ANNE.id, BENEFIT)
    assert caught.value.code == "consent_missing"
    (rec,) = tax.records_since(mark)
    assert rec.reason_code == "consent_missing" and len(rec.subject_commitment) == 32


def test_explicit_field_outside_the_consent_is_denied(instance: ExchangeInstance) -> None:
    social, tax = instance.agency("social"), instance.agency("tax")
    with pytest.raises(errors.ConsentFieldError):
        social.query(tax.service, BINH.id, BENEFIT, ["annual_income", "tax_year"])


def test_rate_limit_of_the_agreement_is_enforced(tmp_path: Path) -> None:
    with own_instance(tmp_path) as instance:  # it spends the agreement's budget
        _rate_limit_is_enforced(instance)


def _rate_limit_is_enforced(instance: ExchangeInstance) -> None:
    tax, social = instance.agency("tax"), instance.agency("social")
    mark = social.mark()
    outcomes = []
    for _ in range(5):
        try:
            tax.query(social.service, ANNE.id, "TAX_ASSESSMENT")
            outcomes.append("ok")
        except errors.RateLimitedError:
            outcomes.append("rate_limited")
    assert outcomes[:3] == ["ok"] * 3 and outcomes[3:] == ["rate_limited"] * 2
    codes = [r.reason_code for r in social.records_since(mark)]
    assert codes == ["ok", "ok", "ok", "rate_limited", "rate_limited"]


def test_sealed_agreement_makes_sealed_records(instance: ExchangeInstance) -> None:
    population, social = instance.agency("population"), instance.agency("social")
    consumer_mark, provider_mark = population.mark(), social.mark()
    response = population.query(social.service, ANNE.id, "IDENTITY_VERIFICATION")
    assert set(response.data.fields) == {"status"}
    for rec in population.records_since(consumer_mark) + social.records_since(provider_mark):
        assert rec.visibility == common_pb2.SEALED


def test_backlog_older_than_the_window_stops_data_release(tmp_path: Path) -> None:
    with own_instance(tmp_path) as instance:  # its outbox window is changed below
        social, population = instance.agency("social"), instance.agency("population")
        social.query(population.service, ANNE.id, BENEFIT)
        outbox = population.running.outbox
        assert outbox.shipper is None and outbox.depth() > 0  # nothing ships in this instance
        saved = outbox.window
        outbox.window = timedelta(milliseconds=1)
        mark = population.mark()
        with pytest.raises(errors.OutboxBacklogError):
            social.query(population.service, ANNE.id, BENEFIT)
        outbox.window = saved
        (rec,) = population.records_since(mark)
        assert (rec.decision, rec.reason_code) == (common_pb2.DENY, "audit_backlog")
        social.query(population.service, ANNE.id, BENEFIT)  # released again within the window


def test_every_record_in_the_outbox_verifies(instance: ExchangeInstance) -> None:
    conf = instance.agency("social").running.conf_client.current()
    for agency in instance.agencies.values():
        key = conf.servers[agency.server_id].signing_public_key
        for item in agency.running.outbox.pending(100_000):
            rec = records.verify_access_record(item.record, key)
            assert rec.recorder == agency.server_id
            assert isinstance(item, audit_pb2.OutboxItem)


def test_revoked_information_system_certificate_is_refused(tmp_path: Path) -> None:
    with own_instance(tmp_path) as instance:  # it revokes a certificate in the registry
        _revoked_certificate_is_refused(instance)


def _revoked_certificate_is_refused(instance: ExchangeInstance) -> None:
    from cdx import pki, rpc
    from cdx.v1 import exchange_pb2, exchange_pb2_grpc
    from tests.integration.exchange_harness import ADMIN, client_identity

    social, population = instance.agency("social"), instance.agency("population")
    identity = client_identity(
        instance.registry_service, social.subsystem, social.client_identity.ca_pem
    )
    channel = rpc.secure_channel(social.running.gateway_address, identity)
    stub = exchange_pb2_grpc.GatewayStub(channel)
    request = exchange_pb2.QueryRequest(
        service=population.service, subject=ANNE.id, purpose=BENEFIT
    )
    try:
        assert rpc.invoke(stub.Query, request, timeout=10).data.fields  # works before revocation
        fingerprint = pki.fingerprint(identity.certificate())
        instance.registry_service.revoke_certificate(fingerprint, "laptop stolen", ADMIN)
        social.running.conf_client.refresh()
        mark = social.mark()
        with pytest.raises(errors.CertificateRevokedError):
            rpc.invoke(stub.Query, request, timeout=10)
        (rec,) = social.records_since(mark)
        assert rec.decision == common_pb2.DENY and rec.reason_code == "certificate_revoked"
    finally:
        channel.close()


def test_oversized_query_is_refused_and_the_server_keeps_serving(
    instance: ExchangeInstance,
) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    with pytest.raises(errors.LimitExceededError):
        social.query(population.service, ANNE.id, BENEFIT, [f"f{i}" for i in range(65)])
    with pytest.raises(errors.LimitExceededError):
        social.query(population.service, ANNE.id, BENEFIT, ["x" * (5 * 1024 * 1024)])
    with pytest.raises(errors.InvalidArgumentError):
        social.query(population.service, ANNE.id, BENEFIT, ["full_name", "full_name"])
    assert social.query(population.service, ANNE.id, BENEFIT).data.fields


def test_stats_count_decisions_without_personal_data(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    before = population.running.stats()
    social.query(population.service, ANNE.id, BENEFIT)
    after = population.running.stats()
    assert after["provider_decisions"]["allow"] == before["provider_decisions"]["allow"] + 1  # type: ignore[index]
    assert after["outbox_depth"] == before["outbox_depth"] + 1  # type: ignore[operator]
    assert after["conf_version"] and after["health_problem"] is None
    assert ANNE.id not in repr(after) and ANNE.full_name not in repr(after)
