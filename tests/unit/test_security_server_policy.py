"""Unit tests for the security server's pure checks: agreements, peers, lawful basis, limits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from cdx import crypto, errors, pki
from cdx.globalconf import VerifiedGlobalConf
from cdx.ids import SecurityServerId
from cdx.lawful import (
    ConsentGrant,
    DenyAllConsentChecker,
    decide_lawful_basis,
)
from cdx.v1 import common_pb2, registry_pb2
from security_server import policy
from security_server.ratelimit import RateLimiter

NOW = datetime(2025, 11, 28, 12, 0, 0, tzinfo=UTC)
PERSON = "VN:GOV:BCA:population/person/v1"
INCOME = "VN:GOV:GDT:income/income/v1"
BENEFITS = "VN:GOV:VSS:benefits"


class Pki:
    def __init__(self) -> None:
        self.ca_key, self.ca = pki.create_ca("VN", NOW)

    def server_cert(self, server_id: str) -> x509.Certificate:
        key = crypto.generate_signing_key("ecdsa-p256")
        return pki.issue_auth_certificate(
            self.ca_key, self.ca, pki.build_csr(key, "s"), SecurityServerId.parse(server_id), NOW
        )


@pytest.fixture(scope="module")
def ca() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def certs(ca: Pki) -> dict[str, x509.Certificate]:
    return {
        sid: ca.server_cert(sid) for sid in ("VN:GOV:VSS:ss1", "VN:GOV:GDT:ss1", "VN:GOV:VSS:ss2")
    }


def _conf(certs: dict[str, x509.Certificate], *, revoked: Sequence[str] = ()) -> VerifiedGlobalConf:
    conf = registry_pb2.GlobalConf(instance="VN", version=1)
    for sid, cert in certs.items():
        conf.servers.add(
            id=sid,
            address="127.0.0.1:1",
            auth_cert_fingerprint=pki.fingerprint(cert),
            subsystems=[BENEFITS] if sid.startswith("VN:GOV:VSS") else ["VN:GOV:GDT:income"],
        )
    conf.services.add(id=PERSON, fields=["full_name", "birth_date", "address", "gender"])
    conf.services.add(id=INCOME, fields=["annual_income", "tax_year"])
    conf.agreements.add(
        id="agr-1",
        client=BENEFITS,
        service=PERSON,
        purpose="SOCIAL_BENEFIT_ELIGIBILITY",
        lawful_basis=common_pb2.LEGAL_OBLIGATION,
        legal_reference="Law 1",
        fields=["full_name", "birth_date"],
    )
    conf.agreements.add(
        id="agr-2",
        client=BENEFITS,
        service=PERSON,
        purpose="FRAUD_INVESTIGATION",
        lawful_basis=common_pb2.PUBLIC_TASK,
        legal_reference="Law 2",
        fields=["address"],
    )
    conf.agreements.add(
        id="agr-3",
        client=BENEFITS,
        service=INCOME,
        purpose="SOCIAL_BENEFIT_ELIGIBILITY",
        lawful_basis=common_pb2.CONSENT,
        fields=["annual_income", "tax_year"],
    )
    conf.revoked_cert_fingerprints.extend(revoked)
    return VerifiedGlobalConf(conf, b"", "")  # fmt: skip


# --- authorize ---------------------------------------------------------------------------------


def test_empty_field_list_asks_for_every_permitted_field(
    certs: dict[str, x509.Certificate],
) -> None:
    auth = policy.authorize(_conf(certs), BENEFITS, PERSON, "SOCIAL_BENEFIT_ELIGIBILITY", [])
    assert auth.fields == {"full_name", "birth_date"} and not auth.explicit_fields
    assert auth.agreement.id == "agr-1"


def test_explicit_subset_is_granted(certs: dict[str, x509.Certificate]) -> None:
    auth = policy.authorize(
        _conf(certs), BENEFITS, PERSON, "SOCIAL_BENEFIT_ELIGIBILITY", ["full_name"]
    )
    assert auth.fields == {"full_name"} and auth.explicit_fields


@pytest.mark.parametrize(
    ("client", "service", "purpose", "fields", "error"),
    [
        (
            BENEFITS,
            "VN:GOV:BCA:population/nosuch/v1",
            "SOCIAL_BENEFIT_ELIGIBILITY",
            [],
            errors.UnknownServiceError,
        ),
        ("VN:GOV:GDT:income", PERSON, "SOCIAL_BENEFIT_ELIGIBILITY", [], errors.NoAgreementError),
        (BENEFITS, PERSON, "TAX_ASSESSMENT", [], errors.PurposeNotAllowedError),
        (BENEFITS, PERSON, "SOCIAL_BENEFIT_ELIGIBILITY", ["address"], errors.FieldNotAllowedError),
        (
            BENEFITS,
            PERSON,
            "SOCIAL_BENEFIT_ELIGIBILITY",
            ["full_name", "nosuch"],
            errors.FieldNotAllowedError,
        ),
    ],
    ids=["unknown_service", "no_agreement", "wrong_purpose", "field_outside", "unknown_field"],
)
def test_authorize_refusals(
    certs: dict[str, x509.Certificate],
    client: str,
    service: str,
    purpose: str,
    fields: list[str],
    error: type[errors.CdxError],
) -> None:
    with pytest.raises(errors.CdxError) as caught:
        policy.authorize(_conf(certs), client, service, purpose, fields)
    assert type(caught.value) is error


def test_purpose_selects_its_own_agreement(certs: dict[str, x509.Certificate]) -> None:
    auth = policy.authorize(_conf(certs), BENEFITS, PERSON, "FRAUD_INVESTIGATION", [])
    assert auth.fields == {"address"} and auth.agreement.lawful_basis == "PUBLIC_TASK"


# --- check_peer --------------------------------------------------------------------------------


def test_registered_peer_of_the_clients_member_passes(certs: dict[str, x509.Certificate]) -> None:
    server = policy.check_peer(
        _conf(certs), certs["VN:GOV:VSS:ss1"], consumer_server="VN:GOV:VSS:ss1", client=BENEFITS
    )
    assert server.id == "VN:GOV:VSS:ss1"


def test_any_registered_server_of_the_member_may_send(certs: dict[str, x509.Certificate]) -> None:
    policy.check_peer(
        _conf(certs), certs["VN:GOV:VSS:ss2"], consumer_server="VN:GOV:VSS:ss2", client=BENEFITS
    )


@pytest.mark.parametrize(
    ("cert_of", "consumer_server", "client"),
    [
        (None, "VN:GOV:VSS:ss1", BENEFITS),  # no certificate at all
        ("VN:GOV:GDT:ss1", "VN:GOV:VSS:ss1", BENEFITS),  # another server's certificate
        ("VN:GOV:VSS:ss2", "VN:GOV:VSS:ss1", BENEFITS),  # header names a sibling server
        ("VN:GOV:GDT:ss1", "VN:GOV:GDT:ss1", BENEFITS),  # a server acting for another member
        ("VN:GOV:VSS:ss1", "VN:GOV:VSS:ss1", "not-a-subsystem"),
    ],
    ids=["no_cert", "other_server", "sibling_named", "other_member", "bad_client"],
)
def test_unregistered_peers_are_refused(
    certs: dict[str, x509.Certificate], cert_of: str | None, consumer_server: str, client: str
) -> None:
    cert = certs[cert_of] if cert_of else None
    with pytest.raises(errors.PeerNotRegisteredError):
        policy.check_peer(_conf(certs), cert, consumer_server=consumer_server, client=client)


def test_unknown_certificate_is_refused(ca: Pki, certs: dict[str, x509.Certificate]) -> None:
    stranger = ca.server_cert("VN:GOV:VSS:ss1")  # right name, never registered
    with pytest.raises(errors.PeerNotRegisteredError):
        policy.check_peer(_conf(certs), stranger, consumer_server="VN:GOV:VSS:ss1", client=BENEFITS)


def test_revoked_certificate_is_refused(certs: dict[str, x509.Certificate]) -> None:
    cert = certs["VN:GOV:VSS:ss1"]
    conf = _conf(certs, revoked=[pki.fingerprint(cert)])
    with pytest.raises(errors.CertificateRevokedError):
        policy.check_peer(conf, cert, consumer_server="VN:GOV:VSS:ss1", client=BENEFITS)


# --- lawful basis ------------------------------------------------------------------------------


class Grant:
    def __init__(self, fields: set[str] | None, error: errors.CdxError | None = None) -> None:
        self.fields = fields
        self.error = error
        self.seen: dict[str, object] = {}

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
        self.seen = {
            "subject": subject,
            "client": client,
            "service": service,
            "purpose": purpose,
            "fields": list(fields),
            "consent_id": consent_id,
        }
        if self.error is not None:
            raise self.error
        return ConsentGrant("c-1", frozenset(self.fields or ()))  # fmt: skip


def _agreement(certs: dict[str, x509.Certificate], purpose: str, service: str = PERSON):
    return policy.authorize(_conf(certs), BENEFITS, service, purpose, []).agreement


def test_legal_mandate_needs_no_consent(certs: dict[str, x509.Certificate]) -> None:
    checker = Grant(None, errors.ConsentDeniedError())
    decision = decide_lawful_basis(
        _agreement(certs, "SOCIAL_BENEFIT_ELIGIBILITY"), frozenset({"full_name"}),
        explicit_fields=True, subject="079090000001", consent_id=None, checker=checker, now=NOW,
    )  # fmt: skip
    assert decision.lawful_basis == "LEGAL_OBLIGATION" and decision.legal_reference == "Law 1"
    assert decision.allowed_fields == {"full_name"} and checker.seen == {}


def test_consent_intersects_a_default_request(certs: dict[str, x509.Certificate]) -> None:
    checker = Grant({"annual_income"})
    agreement = _agreement(certs, "SOCIAL_BENEFIT_ELIGIBILITY", INCOME)
    decision = decide_lawful_basis(
        agreement, frozenset({"annual_income", "tax_year"}), explicit_fields=False,
        subject="079090000001", consent_id="c-1", checker=checker, now=NOW,
    )  # fmt: skip
    assert decision.allowed_fields == {"annual_income"} and decision.consent_id == "c-1"
    assert checker.seen["subject"] == "079090000001" and checker.seen["client"] == BENEFITS
    assert checker.seen["fields"] == ["annual_income", "tax_year"]


def test_consent_must_cover_every_explicit_field(certs: dict[str, x509.Certificate]) -> None:
    agreement = _agreement(certs, "SOCIAL_BENEFIT_ELIGIBILITY", INCOME)
    with pytest.raises(errors.ConsentFieldError):
        decide_lawful_basis(
            agreement, frozenset({"annual_income", "tax_year"}), explicit_fields=True,
            subject="079090000001", consent_id=None, checker=Grant({"annual_income"}), now=NOW,
        )  # fmt: skip


def test_consent_covering_nothing_requested_is_denied(certs: dict[str, x509.Certificate]) -> None:
    agreement = _agreement(certs, "SOCIAL_BENEFIT_ELIGIBILITY", INCOME)
    with pytest.raises(errors.ConsentFieldError):
        decide_lawful_basis(
            agreement, frozenset({"tax_year"}), explicit_fields=False, subject="079090000001",
            consent_id=None, checker=Grant({"annual_income"}), now=NOW,
        )  # fmt: skip


@pytest.mark.parametrize(
    "error",
    [errors.ConsentRevokedError(), errors.ConsentPausedError(), errors.ConsentUnavailableError()],
)
def test_checker_errors_pass_through(
    certs: dict[str, x509.Certificate], error: errors.CdxError
) -> None:
    agreement = _agreement(certs, "SOCIAL_BENEFIT_ELIGIBILITY", INCOME)
    with pytest.raises(type(error)):
        decide_lawful_basis(
            agreement, frozenset({"annual_income"}), explicit_fields=False,
            subject="079090000001", consent_id=None, checker=Grant(None, error), now=NOW,
        )  # fmt: skip


def test_default_checker_denies_every_consent(certs: dict[str, x509.Certificate]) -> None:
    agreement = _agreement(certs, "SOCIAL_BENEFIT_ELIGIBILITY", INCOME)
    with pytest.raises(errors.ConsentDeniedError) as caught:
        decide_lawful_basis(
            agreement, frozenset({"annual_income"}), explicit_fields=False,
            subject="079090000001", consent_id=None, checker=DenyAllConsentChecker(), now=NOW,
        )  # fmt: skip
    assert caught.value.code == "consent_missing"


# --- rate limit --------------------------------------------------------------------------------


def test_rate_limit_bucket_refills_over_time() -> None:
    limiter = RateLimiter()
    for _ in range(3):
        limiter.acquire("agr-1", 3, 100.0)
    with pytest.raises(errors.RateLimitedError):
        limiter.acquire("agr-1", 3, 100.0)
    limiter.acquire("agr-2", 3, 100.0)  # buckets are per agreement
    limiter.acquire("agr-1", 3, 100.0 + 20.0)  # 3/min = one token per 20 s
    with pytest.raises(errors.RateLimitedError):
        limiter.acquire("agr-1", 3, 100.0 + 21.0)


def test_zero_rate_limit_means_unlimited() -> None:
    limiter = RateLimiter()
    for _ in range(1000):
        limiter.acquire("agr-1", 0, 1.0)


def test_rate_limit_never_exceeds_its_capacity_after_idling() -> None:
    limiter = RateLimiter()
    limiter.acquire("agr-1", 2, 0.0)
    for _ in range(2):
        limiter.acquire("agr-1", 2, timedelta(hours=1).total_seconds())
    with pytest.raises(errors.RateLimitedError):
        limiter.acquire("agr-1", 2, timedelta(hours=1).total_seconds())
