"""Fuzzing the exchange envelope: random and mutated envelopes, garbage signed by a registered
key (an insider sending nonsense), garbage sealed to the right HPKE key. Only CDX errors escape;
a mutated envelope never verifies; garbage that verifies still parses or fails with a code."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cdx import crypto, envelope
from cdx.errors import (
    DecryptionError,
    EnvelopeExpiredError,
    EnvelopeFromFutureError,
    LimitExceededError,
    MalformedError,
    ProtocolVersionError,
    RequestHashMismatchError,
    SignatureError,
)
from cdx.v1 import common_pb2, exchange_pb2

from .fuzzing import (
    expect_error,
    fuzz_settings,
    mutated,
    outcome,
    protobuf_messages,
    raw_protobuf_bytes,
    untrusted_bytes,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CONSUMER = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
PROVIDER = crypto.KeySigner(crypto.generate_signing_key("ed25519"))
HPKE_KEY = crypto.generate_hpke_key()


def _header() -> exchange_pb2.EnvelopeHeader:
    return exchange_pb2.EnvelopeHeader(
        protocol_version=envelope.PROTOCOL_VERSION,
        message_id="0190a0b0-0000-7000-8000-000000000001",
        client="VN:GOV:VSS:benefits",
        consumer_server="VN:GOV:VSS:ss1",
        service="VN:GOV:BCA:population/person/v1",
        provider_server="VN:GOV:BCA:ss1",
        purpose="BENEFIT_ELIGIBILITY",
        lawful_basis=common_pb2.LEGAL_OBLIGATION,
        legal_reference="Decree 1/2025",
        fields=["full_name", "address"],
        issued_at_ms=int(NOW.timestamp() * 1000),
        deadline_ms=int((NOW + timedelta(seconds=10)).timestamp() * 1000),
    )


SEALED = envelope.seal_request(
    _header(), exchange_pb2.RequestBody(subject="001099012345"), HPKE_KEY.public_key(), CONSUMER
)
VALID = SEALED.envelope
RESPONSE = envelope.seal_response(
    exchange_pb2.ResponseHeader(
        protocol_version=1,
        message_id="m",
        request_hash=SEALED.request_hash,
        released_fields=["full_name"],
    ),
    exchange_pb2.ResponseBody(),
    SEALED.response_key,
    PROVIDER,
)


def _envelopes(
    valid: exchange_pb2.SignedEnvelope,
) -> st.SearchStrategy[exchange_pb2.SignedEnvelope]:
    """Envelopes whose three parts are random, or the valid ones with at least one mutated."""
    part = st.sampled_from(["header", "ciphertext", "signature"])

    def mutate(draw_part: tuple[str, bytes]) -> exchange_pb2.SignedEnvelope:
        name, data = draw_part
        env = exchange_pb2.SignedEnvelope()
        env.CopyFrom(valid)
        setattr(env, name, data)
        return env

    one_mutated = part.flatmap(
        lambda name: mutated(getattr(valid, name)).map(lambda data: (name, data))
    ).map(mutate)
    random = st.builds(
        exchange_pb2.SignedEnvelope,
        header=raw_protobuf_bytes(exchange_pb2.EnvelopeHeader),
        ciphertext=st.binary(max_size=200),
        signature=st.binary(max_size=100),
    )
    return st.one_of(one_mutated, random)


def _same(a: exchange_pb2.SignedEnvelope, b: exchange_pb2.SignedEnvelope) -> bool:
    return a.SerializeToString() == b.SerializeToString()


@fuzz_settings()
@given(env=_envelopes(VALID))
def test_fuzz_parse_unverified_header(env: exchange_pb2.SignedEnvelope) -> None:
    result = outcome(envelope.parse_unverified_header, env)
    if isinstance(result, Exception):
        assert isinstance(result, LimitExceededError | MalformedError)
    else:
        assert result.message_id and result.client and result.consumer_server


@fuzz_settings()
@given(env=_envelopes(VALID))
def test_fuzz_mutated_request_never_verifies(env: exchange_pb2.SignedEnvelope) -> None:
    result = outcome(envelope.verify_request, env, CONSUMER.public_key(), NOW)
    if _same(env, VALID):
        assert isinstance(result, envelope.VerifiedRequest)
    else:
        # ECDSA signatures are malleable only by the key holder; any change to the three parts
        # (header, ciphertext, or signature bytes) must fail verification.
        assert isinstance(result, SignatureError | MalformedError | LimitExceededError), result


@fuzz_settings()
@given(
    header=protobuf_messages(exchange_pb2.EnvelopeHeader), now_shift=st.integers(-(10**6), 10**6)
)
def test_fuzz_insider_signed_header(header: exchange_pb2.EnvelopeHeader, now_shift: int) -> None:
    """A registered server signs a random (well-formed) header: checks fail with codes."""
    header_bytes = header.SerializeToString()
    ciphertext = b"\x00" * 64
    env = exchange_pb2.SignedEnvelope(
        header=header_bytes,
        ciphertext=ciphertext,
        signature=CONSUMER.sign(envelope.signing_input(header_bytes, ciphertext))
        if header_bytes
        else b"",
    )
    now = NOW + timedelta(milliseconds=now_shift)
    result = outcome(envelope.verify_request, env, CONSUMER.public_key(), now)
    if not isinstance(result, Exception):
        assert result.header.protocol_version in envelope.SUPPORTED_VERSIONS
        assert len(result.header.fields) <= envelope.MAX_FIELDS
        return
    assert isinstance(
        result,
        MalformedError
        | LimitExceededError
        | ProtocolVersionError
        | EnvelopeExpiredError
        | EnvelopeFromFutureError,
    ), result


@fuzz_settings()
@given(header_bytes=untrusted_bytes(VALID.header, max_size=300))
def test_fuzz_insider_signed_header_bytes(header_bytes: bytes) -> None:
    """Arbitrary header bytes correctly signed: parse errors are MalformedError, not DecodeError."""
    env = exchange_pb2.SignedEnvelope(
        header=header_bytes,
        ciphertext=VALID.ciphertext,
        signature=CONSUMER.sign(envelope.signing_input(header_bytes, VALID.ciphertext)),
    )
    outcome(envelope.verify_request, env, CONSUMER.public_key(), NOW)


@fuzz_settings(scale=0.5)
@given(plaintext=raw_protobuf_bytes(exchange_pb2.RequestBody))
def test_fuzz_request_body_sealed_to_the_right_key(plaintext: bytes) -> None:
    """A body that decrypts but is garbage fails as MalformedError (not DecodeError)."""
    verified = envelope.verify_request(VALID, CONSUMER.public_key(), NOW)
    info = envelope.REQUEST_INFO + hashlib.sha256(verified.header_bytes).digest()
    ciphertext = crypto.hpke_seal(HPKE_KEY.public_key(), plaintext, info)
    forged = envelope.VerifiedRequest(
        verified.header, verified.header_bytes, ciphertext, verified.request_hash
    )
    result = outcome(envelope.open_request_body, forged, HPKE_KEY)
    if isinstance(result, Exception):
        assert isinstance(result, MalformedError)
    else:
        assert len(result.response_key) == 32


@fuzz_settings()
@given(ciphertext=untrusted_bytes(VALID.ciphertext, max_size=300))
def test_fuzz_request_ciphertext(ciphertext: bytes) -> None:
    verified = envelope.verify_request(VALID, CONSUMER.public_key(), NOW)
    forged = envelope.VerifiedRequest(
        verified.header, verified.header_bytes, ciphertext, verified.request_hash
    )
    result = outcome(envelope.open_request_body, forged, HPKE_KEY)
    if ciphertext != VALID.ciphertext:
        assert isinstance(result, DecryptionError), result


@fuzz_settings()
@given(env=_envelopes(RESPONSE))
def test_fuzz_mutated_response_never_opens(env: exchange_pb2.SignedEnvelope) -> None:
    result = outcome(
        envelope.open_response,
        env,
        request_hash=SEALED.request_hash,
        response_key=SEALED.response_key,
        provider_signing_key=PROVIDER.public_key(),
    )
    if _same(env, RESPONSE):
        assert isinstance(result, envelope.VerifiedResponse)
    else:
        assert isinstance(result, SignatureError | MalformedError | LimitExceededError), result


@fuzz_settings(scale=0.5)
@given(
    header_bytes=raw_protobuf_bytes(exchange_pb2.ResponseHeader),
    body=raw_protobuf_bytes(exchange_pb2.ResponseBody),
    request_hash=st.one_of(st.just(SEALED.request_hash), st.binary(max_size=40)),
)
def test_fuzz_provider_signed_garbage_response(
    header_bytes: bytes, body: bytes, request_hash: bytes
) -> None:
    """A provider signs and encrypts garbage: every outcome is a value or a coded error."""
    ciphertext = crypto.aead_seal(SEALED.response_key, body, envelope.RESPONSE_AAD + request_hash)
    env = exchange_pb2.SignedEnvelope(
        header=header_bytes,
        ciphertext=ciphertext,
        signature=PROVIDER.sign(envelope.signing_input(header_bytes, ciphertext)),
    )
    result = outcome(
        envelope.open_response,
        env,
        request_hash=SEALED.request_hash,
        response_key=SEALED.response_key,
        provider_signing_key=PROVIDER.public_key(),
    )
    if not isinstance(result, Exception):
        assert result.header.request_hash == SEALED.request_hash


def test_oversized_envelope_parts_are_refused_before_verification() -> None:
    big = exchange_pb2.SignedEnvelope()
    big.CopyFrom(VALID)
    big.ciphertext = b"\x00" * (envelope.MAX_CIPHERTEXT_BYTES + 1)
    expect_error(LimitExceededError, envelope.verify_request, big, CONSUMER.public_key(), NOW)
    big.CopyFrom(VALID)
    big.header = b"\x0a" * (envelope.MAX_HEADER_BYTES + 1)
    expect_error(LimitExceededError, envelope.parse_unverified_header, big)
    big.CopyFrom(VALID)
    big.signature = b"\x30" * (envelope.MAX_SIGNATURE_BYTES + 1)
    expect_error(LimitExceededError, envelope.verify_request, big, CONSUMER.public_key(), NOW)


def test_huge_field_list_is_refused() -> None:
    header = _header()
    header.fields[:] = [f"f{i}" for i in range(envelope.MAX_FIELDS + 1)]
    sealed = envelope.seal_request(
        header, exchange_pb2.RequestBody(subject="001099012345"), HPKE_KEY.public_key(), CONSUMER
    )
    expect_error(LimitExceededError, envelope.parse_unverified_header, sealed.envelope)
    expect_error(
        LimitExceededError, envelope.verify_request, sealed.envelope, CONSUMER.public_key(), NOW
    )


def test_response_for_another_request_is_refused() -> None:
    expect_error(
        RequestHashMismatchError,
        envelope.open_response,
        RESPONSE,
        request_hash=hashlib.sha256(b"another request").digest(),
        response_key=SEALED.response_key,
        provider_signing_key=PROVIDER.public_key(),
    )


# --- regressions found by the attack tests (tests/security/test_attack_exchange.py) ------------


def test_overlong_or_unprintable_message_id_is_refused() -> None:
    """Message ids reach the replay cache (64 characters; PostgreSQL refuses NUL)."""
    for message_id, error in (
        ("x" * (envelope.MAX_MESSAGE_ID_CHARS + 1), LimitExceededError),
        ("\x00" + "a" * 8, MalformedError),
        ("id with spaces", MalformedError),
        ("é" * 10, MalformedError),
    ):
        header = _header()
        header.message_id = message_id
        sealed = envelope.seal_request(
            header,
            exchange_pb2.RequestBody(subject="001099012345"),
            HPKE_KEY.public_key(),
            CONSUMER,
        )
        expect_error(error, envelope.parse_unverified_header, sealed.envelope)
        expect_error(error, envelope.verify_request, sealed.envelope, CONSUMER.public_key(), NOW)
