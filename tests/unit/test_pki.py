"""Unit tests for cdx.pki: the instance CA, certificate profiles and validation (+ openssl)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cdx import crypto, pki
from cdx.errors import (
    CertificateError,
    CertificateExpiredError,
    CertificateRevokedError,
    InvalidArgumentError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
)
from cdx.ids import MemberId, SecurityServerId

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SERVER = SecurityServerId.parse("VN:GOV:BCA:ss1")
CA_KEY, CA_CERT = pki.create_ca("VN", NOW)
OTHER_CA_KEY, OTHER_CA_CERT = pki.create_ca("XX", NOW)
# Same instance name, so the same subject DN: only the signature tells them apart.
TWIN_CA_KEY, TWIN_CA_CERT = pki.create_ca("VN", NOW)


def _csr(algorithm: Any = "ecdsa-p256", **kwargs: Any) -> bytes:
    return pki.build_csr(crypto.generate_signing_key(algorithm), "requested", **kwargs)


def _issue(kind: str, ca: tuple[Any, x509.Certificate] = (CA_KEY, CA_CERT)) -> x509.Certificate:
    key, cert = ca
    if kind == "auth":
        return pki.issue_auth_certificate(
            key, cert, _csr(), SERVER, NOW, dns_names=["localhost"], ip_addresses=["127.0.0.1"]
        )
    if kind == "signing":
        return pki.issue_signing_certificate(key, cert, _csr(), SERVER, NOW)
    return pki.issue_client_certificate(key, cert, _csr(), "alice", "urn:cdx:admin:alice", NOW)


KINDS = ["auth", "signing", "client"]


# --- the CA ------------------------------------------------------------------------------------


def test_ca_profile() -> None:
    ext = CA_CERT.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()).digest
    cn = CA_CERT.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    org = CA_CERT.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert (cn, org) == ("CDX VN Root CA", "CDX VN")
    assert CA_CERT.issuer == CA_CERT.subject
    assert isinstance(CA_KEY.curve, ec.SECP256R1)
    assert CA_CERT.not_valid_after_utc == NOW + timedelta(days=3650)
    CA_CERT.verify_directly_issued_by(CA_CERT)


@pytest.mark.parametrize(
    ("instance", "now", "validity"),
    [
        ("", NOW, timedelta(days=1)),
        ("V" * 41, NOW, timedelta(days=1)),
        ("VN", datetime(2026, 1, 1), timedelta(days=1)),
        ("VN", NOW, timedelta(0)),
    ],
    ids=["empty-instance", "long-instance", "naive-now", "zero-validity"],
)
def test_create_ca_refuses_bad_arguments(instance: str, now: datetime, validity: timedelta) -> None:
    with pytest.raises(InvalidArgumentError):
        pki.create_ca(instance, now, validity=validity)


# --- issued certificates -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_issued_certificate_validates_against_its_ca(kind: str) -> None:
    cert = _issue(kind)
    pki.validate_certificate(cert, CA_CERT, NOW)
    pki.validate_certificate(cert, CA_CERT, NOW, usage=kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_common_leaf_profile(kind: str) -> None:
    cert = _issue(kind)
    ext = cert.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    assert ext.get_extension_for_class(x509.KeyUsage).critical
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = CA_CERT.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)
    assert cert.issuer == CA_CERT.subject
    assert cert.serial_number != _issue(kind).serial_number


def test_auth_certificate_profile_ignores_names_requested_in_the_csr() -> None:
    csr = _csr(uri="urn:cdx:server:VN:GOV:EVIL:ss9", dns_names=["evil.example"])
    cert = pki.issue_auth_certificate(
        CA_KEY, CA_CERT, csr, SERVER, NOW, dns_names=["localhost"], ip_addresses=["127.0.0.1"]
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER.uri()]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert pki.server_id_of(cert) == SERVER
    assert "requested" not in cert.subject.rfc4514_string()


def test_signing_certificate_names_server_and_member() -> None:
    cert = _issue("signing")
    assert pki.certificate_uris(cert) == [SERVER.uri(), "urn:cdx:member:VN:GOV:BCA"]
    assert pki.member_id_of(cert) == SERVER.member
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [pki.CDX_MESSAGE_SIGNING_EKU]


def test_ed25519_keys_can_be_certified() -> None:
    csr = _csr("ed25519")
    cert = pki.issue_signing_certificate(CA_KEY, CA_CERT, csr, SERVER, NOW)
    pki.validate_certificate(cert, CA_CERT, NOW, usage="signing")


def test_client_certificate_profile() -> None:
    cert = _issue("client")
    assert pki.certificate_uris(cert) == ["urn:cdx:admin:alice"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(CertificateError):
        pki.server_id_of(cert)


@pytest.mark.parametrize(
    "uri",
    [
        "urn:cdx:server:VN:GOV:BCA:ss1",
        "urn:cdx:member:VN:GOV:BCA",
        "urn:cdx:service:registry",
        "urn:cdx:",
        "https://example.org/alice",
        "urn:cdx:admin:al ice",
        "urn:cdx:admin:\u00e1lice",
        "",
    ],
)
def test_client_certificate_refuses_bad_uris(uri: str) -> None:
    with pytest.raises(InvalidArgumentError):
        pki.issue_client_certificate(CA_KEY, CA_CERT, _csr(), "alice", uri, NOW)


def test_leaf_never_outlives_its_ca() -> None:
    short_key, short_ca = pki.create_ca("VN", NOW, validity=timedelta(days=30))
    cert = pki.issue_auth_certificate(short_key, short_ca, _csr(), SERVER, NOW)
    assert cert.not_valid_after_utc == short_ca.not_valid_after_utc


def test_issuing_with_a_mismatched_ca_key_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        pki.issue_auth_certificate(OTHER_CA_KEY, CA_CERT, _csr(), SERVER, NOW)


@pytest.mark.parametrize(
    "kwargs",
    [{"ip_addresses": ["not-an-ip"]}, {"dns_names": [""]}, {"dns_names": ["a b"]}],
)
def test_issuing_with_bad_names_is_refused(kwargs: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        pki.issue_auth_certificate(CA_KEY, CA_CERT, _csr(), SERVER, NOW, **kwargs)


def test_issuing_with_naive_time_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        pki.issue_auth_certificate(CA_KEY, CA_CERT, _csr(), SERVER, datetime(2026, 1, 1))


# --- CSRs --------------------------------------------------------------------------------------


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return f"-----BEGIN {label}-----\n".encode() + body + f"-----END {label}-----\n".encode()


def _csr_der(csr_pem: bytes) -> bytes:
    return x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def test_csr_with_tampered_subject_is_rejected() -> None:
    der = _csr_der(pki.build_csr(crypto.generate_signing_key(), "honest"))
    tampered = _pem("CERTIFICATE REQUEST", _replace_once(der, b"honest", b"forged"))
    with pytest.raises(SignatureError):
        pki.issue_auth_certificate(CA_KEY, CA_CERT, tampered, SERVER, NOW)


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_csr_with_a_signature_by_another_key_is_rejected(algorithm: Any) -> None:
    # Proof of possession: the CSR's public key must be the one that signed it.
    honest = _csr_der(pki.build_csr(crypto.generate_signing_key(algorithm), "x"))
    victim_key = crypto.generate_signing_key(algorithm).public_key()
    victim_spki = crypto.public_key_to_der(victim_key)
    honest_spki = (
        x509.load_der_x509_csr(honest)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    forged = _pem("CERTIFICATE REQUEST", _replace_once(honest, honest_spki, victim_spki))
    with pytest.raises(SignatureError):
        pki.load_csr(forged)
    with pytest.raises(SignatureError):
        pki.issue_signing_certificate(CA_KEY, CA_CERT, forged, SERVER, NOW)


_GOOD_CSR = pki.build_csr(crypto.generate_signing_key(), "good")
_GOOD_CSR_DER = _csr_der(_GOOD_CSR)
_CERT_PEM = pki.cert_to_pem(CA_CERT)

MALFORMED_CSRS = [
    b"",
    b"garbage",
    _GOOD_CSR_DER,
    _GOOD_CSR[:60],
    _GOOD_CSR[:-60],
    b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n",
    b"-----BEGIN CERTIFICATE REQUEST-----\n!!notbase64!!\n-----END CERTIFICATE REQUEST-----\n",
    _pem("CERTIFICATE REQUEST", _GOOD_CSR_DER[:-10]),
    _pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00"),
    _CERT_PEM,
    _GOOD_CSR.decode(),
    None,
]


@pytest.mark.parametrize("data", MALFORMED_CSRS)
def test_malformed_csr_raises_malformed(data: Any) -> None:
    with pytest.raises(MalformedError):
        pki.load_csr(data)
    with pytest.raises(MalformedError):
        pki.issue_auth_certificate(CA_KEY, CA_CERT, data, SERVER, NOW)


def _foreign_csr(key: Any) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foreign")])
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        lambda: ec.generate_private_key(ec.SECP384R1()),
    ],
    ids=["rsa", "p384"],
)
def test_csr_with_unsupported_key_raises_unknown_key(make_key: Callable[[], Any]) -> None:
    with pytest.raises(UnknownKeyError):
        pki.issue_auth_certificate(CA_KEY, CA_CERT, _foreign_csr(make_key()), SERVER, NOW)


@pytest.mark.parametrize("kwargs", [{"common_name": ""}, {"common_name": "x" * 65}])
def test_build_csr_refuses_bad_common_name(kwargs: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        pki.build_csr(crypto.generate_signing_key(), **kwargs)


def test_build_csr_carries_requested_names() -> None:
    csr = pki.load_csr(
        _csr(uri="urn:cdx:server:VN:GOV:BCA:ss1", dns_names=["a.example"], ip_addresses=["::1"])
    )
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER.uri()]
    assert san.get_values_for_type(x509.DNSName) == ["a.example"]


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "other", [(OTHER_CA_KEY, OTHER_CA_CERT), (TWIN_CA_KEY, TWIN_CA_CERT)], ids=["other", "twin"]
)
def test_certificate_from_another_ca_is_rejected(kind: str, other: Any) -> None:
    cert = _issue(kind, other)
    with pytest.raises(CertificateError) as info:
        pki.validate_certificate(cert, CA_CERT, NOW)
    assert type(info.value) is CertificateError


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "at",
    [
        NOW + timedelta(days=365, seconds=1),
        NOW + timedelta(days=3000),
        NOW - timedelta(minutes=5, seconds=1),
        NOW - timedelta(days=1),
    ],
    ids=["just-expired", "long-expired", "just-not-yet-valid", "not-yet-valid"],
)
def test_certificate_outside_validity_is_rejected(kind: str, at: datetime) -> None:
    with pytest.raises(CertificateExpiredError):
        pki.validate_certificate(_issue(kind), CA_CERT, at)


@pytest.mark.parametrize(
    "at", [NOW - timedelta(minutes=5), NOW + timedelta(days=365), NOW + timedelta(days=100)]
)
def test_certificate_inside_validity_is_accepted(at: datetime) -> None:
    pki.validate_certificate(_issue("auth"), CA_CERT, at, usage="auth")


def test_validation_accepts_any_timezone() -> None:
    plus7 = NOW.astimezone(timezone(timedelta(hours=7)))
    pki.validate_certificate(_issue("auth"), CA_CERT, plus7)


def test_expired_ca_is_rejected() -> None:
    key, ca = pki.create_ca("VN", NOW, validity=timedelta(days=30))
    cert = pki.issue_auth_certificate(key, ca, _csr(), SERVER, NOW)
    pki.validate_certificate(cert, ca, NOW + timedelta(days=29))
    with pytest.raises(CertificateExpiredError):
        pki.validate_certificate(cert, ca, NOW + timedelta(days=31))


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_certificate_is_rejected(kind: str) -> None:
    cert = _issue(kind)
    pki.validate_certificate(cert, CA_CERT, NOW, revoked_serials={cert.serial_number + 1})
    with pytest.raises(CertificateRevokedError):
        pki.validate_certificate(cert, CA_CERT, NOW, revoked_serials={1, cert.serial_number})
    with pytest.raises(CertificateRevokedError):
        pki.validate_certificate(cert, CA_CERT, NOW, revoked_serials=[cert.serial_number])


@pytest.mark.parametrize(
    ("kind", "usage"),
    [
        ("auth", "signing"),
        ("auth", "client"),  # a server's TLS certificate is not an admin/IS client certificate
        ("signing", "auth"),
        ("signing", "client"),
        ("client", "auth"),
        ("client", "signing"),
    ],
)
def test_certificate_used_for_the_wrong_purpose_is_rejected(kind: str, usage: Any) -> None:
    with pytest.raises(CertificateError) as info:
        pki.validate_certificate(_issue(kind), CA_CERT, NOW, usage=usage)
    assert type(info.value) is CertificateError


def test_unknown_usage_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError):
        pki.validate_certificate(_issue("auth"), CA_CERT, NOW, usage="tls")  # type: ignore[arg-type]


def test_ca_certificate_is_not_a_leaf_and_a_leaf_is_not_a_ca() -> None:
    with pytest.raises(CertificateError):
        pki.validate_certificate(CA_CERT, CA_CERT, NOW)
    leaf = _issue("auth")
    with pytest.raises(CertificateError):
        pki.validate_certificate(leaf, leaf, NOW)


def test_validation_with_naive_time_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        pki.validate_certificate(_issue("auth"), CA_CERT, datetime(2026, 3, 1))


def _hand_built(
    uris: list[str], *, eku: list[x509.ObjectIdentifier] | None = None
) -> x509.Certificate:
    key = crypto.generate_signing_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hand")]))
        .issuer_name(CA_CERT.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if uris:
        sans = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        signing_usage = pki.key_usage(digital_signature=True, content_commitment=True)
        builder = builder.add_extension(signing_usage, critical=True)
    return builder.sign(CA_KEY, hashes.SHA256())


def test_certificate_without_usage_extensions_is_rejected_for_any_usage() -> None:
    cert = _hand_built([SERVER.uri()])
    pki.validate_certificate(cert, CA_CERT, NOW)
    for usage in KINDS:
        with pytest.raises(CertificateError):
            pki.validate_certificate(cert, CA_CERT, NOW, usage=usage)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uris",
    [
        [],
        ["urn:cdx:admin:alice"],
        [SERVER.uri(), "urn:cdx:server:VN:GOV:BCA:ss2"],
        ["urn:cdx:server:not-a-server-id"],
        ["urn:cdx:server:VN:GOV:BCA:ss1:extra"],
    ],
    ids=["no-san", "no-server-uri", "two-server-uris", "bad-id", "too-many-parts"],
)
def test_server_id_of_requires_exactly_one_valid_server_uri(uris: list[str]) -> None:
    with pytest.raises(CertificateError):
        pki.server_id_of(_hand_built(uris))


@pytest.mark.parametrize("uris", [[], [SERVER.uri()], ["urn:cdx:member:bad"]])
def test_member_id_of_requires_a_valid_member_uri(uris: list[str]) -> None:
    with pytest.raises(CertificateError):
        pki.member_id_of(_hand_built(uris))


@pytest.mark.parametrize(
    "server_id", ["VN:GOV:BCA:ss1", "VN:COM:0101234567:ss-2", "EE:GOV:70000562:a'b(c)+,=?.x"]
)
def test_server_id_of_round_trips(server_id: str) -> None:
    sid = SecurityServerId.parse(server_id)
    for cert in (
        pki.issue_auth_certificate(CA_KEY, CA_CERT, _csr(), sid, NOW),
        pki.issue_signing_certificate(CA_KEY, CA_CERT, _csr(), sid, NOW),
    ):
        assert pki.server_id_of(cert) == sid
    member_cert = pki.issue_signing_certificate(CA_KEY, CA_CERT, _csr(), sid, NOW)
    assert pki.member_id_of(member_cert) == sid.member
    assert pki.member_uri(sid.member).startswith("urn:cdx:member:")


def test_long_identifiers_fit_in_the_subject() -> None:
    part = "a" * 64
    sid = SecurityServerId(MemberId(part, part, part), part)
    cert = pki.issue_auth_certificate(CA_KEY, CA_CERT, _csr(), sid, NOW)
    assert pki.server_id_of(cert) == sid


# --- helpers and loaders -----------------------------------------------------------------------


def test_fingerprint_is_sha256_of_der() -> None:
    cert = _issue("auth")
    der = cert.public_bytes(serialization.Encoding.DER)
    assert pki.fingerprint(cert) == hashlib.sha256(der).hexdigest()
    assert len(pki.fingerprint(cert)) == 64
    assert pki.fingerprint(cert) != pki.fingerprint(_issue("auth"))


def test_pem_and_der_round_trip() -> None:
    cert = _issue("signing")
    assert pki.cert_from_pem(pki.cert_to_pem(cert)) == cert
    assert pki.cert_from_der(cert.public_bytes(serialization.Encoding.DER)) == cert


_DER = CA_CERT.public_bytes(serialization.Encoding.DER)

MALFORMED_CERT_DER = [
    b"",
    b"\x00",
    b"\x30\x00",
    b"garbage",
    _DER[:-1],
    _DER[:50],
    _DER + b"\x00",
    _pem("CERTIFICATE", _DER),
    _GOOD_CSR_DER,
    "text",
    None,
]
MALFORMED_CERT_PEM = [
    b"",
    b"garbage",
    _DER,
    _CERT_PEM[:100],
    _CERT_PEM[:-40],
    b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\n!!notbase64!!\n-----END CERTIFICATE-----\n",
    _pem("CERTIFICATE", _DER[:-10]),
    _pem("CERTIFICATE", b"\x30\x03\x02\x01\x00"),
    _GOOD_CSR,
    crypto.public_key_to_pem(crypto.generate_signing_key().public_key()),
    _CERT_PEM.decode(),
    None,
]


@pytest.mark.parametrize("data", MALFORMED_CERT_DER)
def test_malformed_der_certificate_raises_malformed(data: Any) -> None:
    with pytest.raises(MalformedError):
        pki.cert_from_der(data)


@pytest.mark.parametrize("data", MALFORMED_CERT_PEM)
def test_malformed_pem_certificate_raises_malformed(data: Any) -> None:
    with pytest.raises(MalformedError):
        pki.cert_from_pem(data)


# --- interoperability: OpenSSL must agree -----------------------------------------------------

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not on PATH")


def _openssl_verify(
    tmp_path: Path, ca: x509.Certificate, cert: x509.Certificate, *extra: str
) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    (tmp_path / "ca.pem").write_bytes(pki.cert_to_pem(ca))
    (tmp_path / "cert.pem").write_bytes(pki.cert_to_pem(cert))
    at = str(int((NOW + timedelta(hours=1)).timestamp()))
    return subprocess.run(
        [OPENSSL, "verify", "-x509_strict", "-attime", at, *extra,
         "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem")],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


@needs_openssl
@pytest.mark.parametrize("kind", KINDS)
def test_openssl_verifies_issued_certificates(tmp_path: Path, kind: str) -> None:
    result = _openssl_verify(tmp_path, CA_CERT, _issue(kind))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cert.pem: OK" in result.stdout


@needs_openssl
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("other", [OTHER_CA_CERT, TWIN_CA_CERT], ids=["other", "twin"])
def test_openssl_rejects_certificate_from_another_ca(tmp_path: Path, kind: str, other: Any) -> None:
    result = _openssl_verify(tmp_path, other, _issue(kind))
    assert result.returncode != 0
    assert "cert.pem: OK" not in result.stdout


@needs_openssl
@pytest.mark.parametrize(
    ("kind", "purpose", "ok"),
    [
        ("auth", "sslserver", True),
        ("auth", "sslclient", True),
        ("client", "sslclient", True),
        ("client", "sslserver", False),
        ("signing", "sslserver", False),
        ("signing", "sslclient", False),
    ],
)
def test_openssl_agrees_on_tls_purposes(tmp_path: Path, kind: str, purpose: str, ok: bool) -> None:
    result = _openssl_verify(tmp_path, CA_CERT, _issue(kind), "-purpose", purpose)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr


def test_signing_usage_requires_the_member_uri() -> None:
    with_member = _hand_built(
        [SERVER.uri(), "urn:cdx:member:VN:GOV:BCA"], eku=[pki.CDX_MESSAGE_SIGNING_EKU]
    )
    pki.validate_certificate(with_member, CA_CERT, NOW, usage="signing")
    cert = _hand_built([SERVER.uri()], eku=[pki.CDX_MESSAGE_SIGNING_EKU])
    with pytest.raises(CertificateError):
        pki.validate_certificate(cert, CA_CERT, NOW, usage="signing")
