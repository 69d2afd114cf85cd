"""Fuzzing the key, certificate, CSR, ciphertext and access-record loaders with random and
mutated bytes: only coded CDX errors escape, and nothing mutated verifies or decrypts."""

from __future__ import annotations

import base64
import os
import tempfile
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from cdx import crypto, keyfiles, pki, records
from cdx.errors import (
    CertificateError,
    DecryptionError,
    InvalidArgumentError,
    KeyStoreError,
    LimitExceededError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
)
from cdx.ids import SecurityServerId
from cdx.v1 import audit_pb2

from .fuzzing import HOSTILE_STRINGS, fuzz_settings, mutated, outcome, untrusted_bytes

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SERVER = SecurityServerId.parse("VN:GOV:BCA:ss1")
CA_KEY, CA_CERT = pki.create_ca("VN", NOW - timedelta(days=1))
SIGNING_KEY = crypto.generate_signing_key("ecdsa-p256")
SIGNER = crypto.KeySigner(SIGNING_KEY)
CSR = pki.build_csr(SIGNING_KEY, "VN:GOV:BCA:ss1")
AUTH_CERT = pki.issue_auth_certificate(
    CA_KEY, CA_CERT, CSR, SERVER, NOW, ip_addresses=["127.0.0.1"]
)
SIGNING_CERT = pki.issue_signing_certificate(CA_KEY, CA_CERT, CSR, SERVER, NOW)
AUTH_DER = AUTH_CERT.public_bytes(serialization.Encoding.DER)
HPKE = crypto.generate_hpke_key()

_PUBLIC_DERS = [
    crypto.public_key_to_der(k)
    for k in (
        SIGNER.public_key(),
        crypto.generate_signing_key("ed25519").public_key(),
        HPKE.public_key(),
    )
]
_P384_DER = (
    ec.generate_private_key(ec.SECP384R1())
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)
KEY_ERRORS = (MalformedError, UnknownKeyError)


@fuzz_settings()
@given(data=st.one_of(st.binary(max_size=200), *(mutated(d) for d in [*_PUBLIC_DERS, _P384_DER])))
def test_fuzz_public_key_from_der(data: bytes) -> None:
    result = outcome(crypto.public_key_from_der, data)
    if isinstance(result, Exception):
        assert isinstance(result, KEY_ERRORS)
    else:
        assert crypto.public_key_to_der(result) == data or data not in _PUBLIC_DERS


@fuzz_settings()
@given(
    data=st.one_of(st.binary(max_size=300), mutated(crypto.public_key_to_pem(SIGNER.public_key())))
)
def test_fuzz_public_key_from_pem(data: bytes) -> None:
    result = outcome(crypto.public_key_from_pem, data)
    if isinstance(result, Exception):
        assert isinstance(result, KEY_ERRORS)


@fuzz_settings()
@given(data=st.binary(max_size=40))
def test_fuzz_x25519_public_from_raw(data: bytes) -> None:
    result = outcome(crypto.x25519_public_from_raw, data)
    if isinstance(result, Exception):
        assert isinstance(result, MalformedError)
    else:
        assert len(data) == 32


VALID_SIGNATURE = SIGNER.sign(b"message")


@fuzz_settings()
@given(signature=untrusted_bytes(VALID_SIGNATURE, max_size=200))
def test_fuzz_signatures_forged_truncated_or_mutated(signature: bytes) -> None:
    result = outcome(crypto.verify, SIGNER.public_key(), signature, b"message")
    if signature != VALID_SIGNATURE:
        assert isinstance(result, SignatureError), "a changed signature verified"


SEALED = crypto.hpke_seal(HPKE.public_key(), b"payload", b"info")
AEAD_KEY = os.urandom(32)
AEAD_SEALED = crypto.aead_seal(AEAD_KEY, b"payload", b"aad")


@fuzz_settings()
@given(ciphertext=untrusted_bytes(SEALED, max_size=200), info=st.sampled_from([b"info", b"other"]))
def test_fuzz_hpke_open(ciphertext: bytes, info: bytes) -> None:
    result = outcome(crypto.hpke_open, HPKE, ciphertext, info)
    if (ciphertext, info) != (SEALED, b"info"):
        assert isinstance(result, DecryptionError)


@fuzz_settings()
@given(
    data=untrusted_bytes(AEAD_SEALED, max_size=200),
    key=st.one_of(st.just(AEAD_KEY), st.binary(max_size=40)),
)
def test_fuzz_aead_open(data: bytes, key: bytes) -> None:
    result = outcome(crypto.aead_open, key, data, b"aad")
    if (data, key) != (AEAD_SEALED, AEAD_KEY):
        assert isinstance(result, DecryptionError | InvalidArgumentError)


CERT_ERRORS = (MalformedError, UnknownKeyError)


def _check_parsed_certificate(cert: x509.Certificate, original: bytes) -> None:
    """Every check a server runs on a peer certificate yields a value or a coded error."""
    for usage in ("auth", "signing", "client"):
        result = outcome(pki.validate_certificate, cert, CA_CERT, NOW, usage=usage)
        if not isinstance(result, Exception):
            # Only the unmodified certificate (or a re-encoding of it) validates.
            assert (
                cert.tbs_certificate_bytes
                == x509.load_der_x509_certificate(original).tbs_certificate_bytes
            )
        else:
            assert isinstance(result, CertificateError)
    for fn in (pki.server_id_of, pki.member_id_of, pki.certificate_uris, pki.fingerprint):
        result = outcome(fn, cert)
        if isinstance(result, Exception):
            assert isinstance(result, CertificateError)


@fuzz_settings()
@given(
    data=st.one_of(
        st.binary(max_size=300),
        mutated(AUTH_DER),
        mutated(SIGNING_CERT.public_bytes(serialization.Encoding.DER)),
    )
)
def test_fuzz_certificate_from_der(data: bytes) -> None:
    result = outcome(pki.cert_from_der, data)
    if isinstance(result, Exception):
        assert isinstance(result, CERT_ERRORS)
        return
    _check_parsed_certificate(result, data)


@fuzz_settings(scale=0.5)
@given(data=st.one_of(st.binary(max_size=300), mutated(pki.cert_to_pem(AUTH_CERT))))
def test_fuzz_certificate_from_pem(data: bytes) -> None:
    result = outcome(pki.cert_from_pem, data)
    if isinstance(result, Exception):
        assert isinstance(result, CERT_ERRORS)


@fuzz_settings(scale=0.5)
@given(data=st.one_of(st.binary(max_size=300), mutated(CSR)))
def test_fuzz_csr(data: bytes) -> None:
    result = outcome(pki.load_csr, data)
    if isinstance(result, Exception):
        assert isinstance(result, (*CERT_ERRORS, SignatureError))


@fuzz_settings(scale=0.5)
@given(
    uris=st.lists(
        st.one_of(
            st.text(max_size=40).map(lambda t: "urn:cdx:server:" + t),
            st.text(max_size=40).map(lambda t: "urn:cdx:member:" + t),
            st.sampled_from(HOSTILE_STRINGS).map(lambda t: "urn:cdx:server:" + t),
            st.just(SERVER.uri()),
        ),
        max_size=3,
    )
)
def test_fuzz_certificate_uri_sans(uris: list[str]) -> None:
    """A CA-signed certificate naming odd (or several) servers yields one id or a coded error."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(CA_CERT.subject)
        .issuer_name(CA_CERT.subject)
        .public_key(SIGNER.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
    )
    try:
        sans = [x509.UniformResourceIdentifier(u) for u in uris]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(CA_KEY, hashes.SHA256())
    except (ValueError, UnicodeError):
        return  # the library itself refuses to encode such a name
    result = outcome(pki.server_id_of, cert)
    if isinstance(result, Exception):
        assert isinstance(result, CertificateError)
    else:
        assert [u for u in uris if u.startswith("urn:cdx:server:")] == [
            u for u in uris if u.startswith("urn:cdx:server:")
        ][:1]
        assert SecurityServerId.from_uri(result.uri()) == result


_KEY_FILE_PASSPHRASE = b"correct horse"


def _key_file_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.key")
        keyfiles.save_private_key(path, SIGNING_KEY, _KEY_FILE_PASSPHRASE)
        with open(path, "rb") as handle:
            return handle.read()


KEY_FILE = _key_file_bytes()


@fuzz_settings(scale=0.3)
@given(data=st.one_of(st.binary(max_size=300), mutated(KEY_FILE)))
def test_fuzz_private_key_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        result = outcome(keyfiles.load_private_key, path, _KEY_FILE_PASSPHRASE)
    if isinstance(result, Exception):
        assert isinstance(result, KeyStoreError)


RECORD = records.sign_access_record(
    audit_pb2.AccessRecord(record_id="r1", recorder="VN:GOV:BCA:ss1", message_id="m1"), SIGNER
)


@fuzz_settings()
@given(
    record=untrusted_bytes(RECORD.record, max_size=300),
    signature=untrusted_bytes(RECORD.signature, max_size=100),
    key_id=st.one_of(st.just(RECORD.key_id), st.text(max_size=200)),
)
def test_fuzz_signed_access_record(record: bytes, signature: bytes, key_id: str) -> None:
    signed = audit_pb2.SignedAccessRecord(record=record, signature=signature, key_id=key_id)
    hint = outcome(records.parse_unverified_record, signed)
    if isinstance(hint, Exception):
        assert isinstance(hint, MalformedError | LimitExceededError)
    result = outcome(records.verify_access_record, signed, SIGNER.public_key())
    if (record, signature) != (RECORD.record, RECORD.signature):
        assert isinstance(result, SignatureError | MalformedError | LimitExceededError), result
    else:
        assert not isinstance(result, Exception)


# --- regressions found by the fuzz tests above --------------------------------------------------


def test_certificate_with_malformed_issuer_is_refused_at_load() -> None:
    """cryptography parses names lazily: the loader must touch them, or validation crashes."""
    at = AUTH_DER.index(b"\x0eCDX VN Root CA") - 1  # the issuer CN's string tag
    broken = AUTH_DER[:at] + b"\x0d" + AUTH_DER[at + 1 :]  # 0x0d is not a string type
    result = outcome(pki.cert_from_der, broken)
    assert isinstance(result, MalformedError), result


def test_lazily_malformed_issuer_fails_validation_with_a_code() -> None:
    at = AUTH_DER.index(b"\x0eCDX VN Root CA") - 1
    broken = x509.load_der_x509_certificate(AUTH_DER[:at] + b"\x0d" + AUTH_DER[at + 1 :])
    result = outcome(pki.validate_certificate, broken, CA_CERT, NOW, usage="auth")
    assert isinstance(result, CertificateError), result


def test_csr_or_certificate_with_an_unknown_version_is_malformed_not_a_crash() -> None:
    """cryptography raises ``InvalidVersion`` (not a ``ValueError``) for such structures."""
    der = x509.load_pem_x509_csr(CSR).public_bytes(serialization.Encoding.DER)
    at = der.index(b"\x02\x01\x00")  # CertificationRequestInfo version 0 (v1)
    bad = der[:at] + b"\x02\x01\x20" + der[at + 3 :]
    pem = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bad)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    assert isinstance(outcome(pki.load_csr, pem), MalformedError)
    at = AUTH_DER.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT version 2 (v3)
    bad_cert = AUTH_DER[:at] + b"\xa0\x03\x02\x01\x07" + AUTH_DER[at + 5 :]
    assert isinstance(outcome(pki.cert_from_der, bad_cert), MalformedError)


def test_certificate_with_a_duplicate_extension_is_malformed_not_a_crash() -> None:
    """cryptography raises ``DuplicateExtension`` (not a ``ValueError``) when extensions parse."""
    ski, key_usage = b"\x06\x03U\x1d\x0e", b"\x06\x03U\x1d\x0f"  # SubjectKeyIdentifier, KeyUsage
    broken = AUTH_DER.replace(ski, key_usage, 1)
    assert isinstance(outcome(pki.cert_from_der, broken), MalformedError)
    lazy = x509.load_der_x509_certificate(broken)  # as a TLS stack might hand it over
    assert isinstance(
        outcome(pki.validate_certificate, lazy, CA_CERT, NOW, usage="auth"), CertificateError
    )
    assert isinstance(outcome(pki.server_id_of, lazy), CertificateError)
