"""Unit tests for cdx.envelope: sealing, signing, verifying and opening exchange envelopes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx import crypto, envelope, errors
from cdx.v1 import common_pb2, exchange_pb2

NOW = datetime(2025, 11, 28, 12, 0, 0, tzinfo=UTC)
SUBJECT = "079090000001"


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class Parties:
    def __init__(self) -> None:
        self.consumer = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
        self.provider = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
        self.hpke = crypto.generate_hpke_key()


@pytest.fixture(scope="module")
def parties() -> Parties:
    return Parties()


def _header(**changes: object) -> exchange_pb2.EnvelopeHeader:
    fields: dict[str, object] = {
        "protocol_version": envelope.PROTOCOL_VERSION,
        "message_id": "01937a3e-0000-7000-8000-000000000001",
        "client": "VN:GOV:VSS:benefits",
        "consumer_server": "VN:GOV:VSS:ss1",
        "service": "VN:GOV:BCA:population/person/v1",
        "provider_server": "VN:GOV:BCA:ss1",
        "purpose": "SOCIAL_BENEFIT_ELIGIBILITY",
        "lawful_basis": common_pb2.LEGAL_OBLIGATION,
        "fields": ["full_name"],
        "issued_at_ms": _ms(NOW),
        "deadline_ms": _ms(NOW + timedelta(seconds=10)),
    }
    fields.update(changes)
    return exchange_pb2.EnvelopeHeader(**fields)  # type: ignore[arg-type]


def _seal(p: Parties, **changes: object) -> envelope.SealedRequest:
    body = exchange_pb2.RequestBody(subject=SUBJECT)
    return envelope.seal_request(_header(**changes), body, p.hpke.public_key(), p.consumer)


def _resign(env: exchange_pb2.SignedEnvelope, signer: crypto.Signer) -> exchange_pb2.SignedEnvelope:
    return exchange_pb2.SignedEnvelope(
        header=env.header,
        ciphertext=env.ciphertext,
        signature=signer.sign(envelope.signing_input(env.header, env.ciphertext)),
    )


def _flip(data: bytes, index: int = -1) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _verify(
    p: Parties, env: exchange_pb2.SignedEnvelope, now: datetime = NOW
) -> envelope.VerifiedRequest:
    return envelope.verify_request(env, p.consumer.public_key(), now)


def _answer(
    p: Parties, sealed: envelope.SealedRequest, **changes: object
) -> exchange_pb2.SignedEnvelope:
    header = exchange_pb2.ResponseHeader(
        protocol_version=envelope.PROTOCOL_VERSION,
        message_id="01937a3e-0000-7000-8000-000000000001",
        request_hash=sealed.request_hash,
        provider_server="VN:GOV:BCA:ss1",
        released_fields=["full_name"],
        issued_at_ms=_ms(NOW),
    )
    for key, value in changes.items():
        setattr(header, key, value)
    body = exchange_pb2.ResponseBody()
    body.data.fields["full_name"].string_value = "Nguyễn Văn An"
    return envelope.seal_response(header, body, sealed.response_key, p.provider)


def _open(
    p: Parties,
    sealed: envelope.SealedRequest,
    answer: exchange_pb2.SignedEnvelope,
    **overrides: object,
) -> envelope.VerifiedResponse:
    kwargs: dict[str, object] = {
        "request_hash": sealed.request_hash,
        "response_key": sealed.response_key,
        "provider_signing_key": p.provider.public_key(),
    }
    kwargs.update(overrides)
    return envelope.open_response(answer, **kwargs)  # type: ignore[arg-type]


# --- round trip ---------------------------------------------------------------------------------


def test_request_and_response_round_trip(parties: Parties) -> None:
    sealed = _seal(parties)
    unverified = envelope.parse_unverified_header(sealed.envelope)
    assert unverified.consumer_server == "VN:GOV:VSS:ss1"
    verified = _verify(parties, sealed.envelope)
    assert verified.header.signing_key_id == parties.consumer.key_id
    assert verified.request_hash == sealed.request_hash
    body = envelope.open_request_body(verified, parties.hpke)
    assert body.subject == SUBJECT and body.response_key == sealed.response_key
    answer = _answer(parties, sealed)
    opened = _open(parties, sealed, answer)
    assert opened.body.data.fields["full_name"].string_value == "Nguyễn Văn An"
    assert opened.header.request_hash == sealed.request_hash


def test_subject_is_not_in_the_envelope_outside_the_ciphertext(parties: Parties) -> None:
    env = _seal(parties).envelope
    assert SUBJECT.encode() not in env.SerializeToString()


def test_request_hash_covers_the_signed_bytes(parties: Parties) -> None:
    sealed = _seal(parties)
    env = sealed.envelope
    expected = hashlib.sha256(envelope.signing_input(env.header, env.ciphertext)).digest()
    assert sealed.request_hash == expected


@settings(max_examples=25, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=40),
    fields=st.lists(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), max_size=10),
    data=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.text(max_size=50)),
)
def test_round_trip_property(subject: str, fields: list[str], data: dict[str, str]) -> None:
    p = Parties()
    body = exchange_pb2.RequestBody(subject=subject)
    sealed = envelope.seal_request(_header(fields=fields), body, p.hpke.public_key(), p.consumer)
    verified = _verify(p, sealed.envelope)
    assert list(verified.header.fields) == fields
    assert envelope.open_request_body(verified, p.hpke).subject == subject
    response = exchange_pb2.ResponseBody()
    for key, value in data.items():
        response.data.fields[key].string_value = value
    header = exchange_pb2.ResponseHeader(
        protocol_version=envelope.PROTOCOL_VERSION, request_hash=sealed.request_hash
    )
    answer = envelope.seal_response(header, response, sealed.response_key, p.provider)
    opened = _open(p, sealed, answer)
    assert {k: v.string_value for k, v in opened.body.data.fields.items()} == data


# --- each attack has its own error ------------------------------------------------------------


def test_tampered_header_is_a_signature_error(parties: Parties) -> None:
    env = _seal(parties).envelope
    env.header = _flip(env.header, 5)
    with pytest.raises(errors.SignatureError):
        _verify(parties, env)


def test_tampered_ciphertext_is_a_signature_error(parties: Parties) -> None:
    env = _seal(parties).envelope
    env.ciphertext = _flip(env.ciphertext)
    with pytest.raises(errors.SignatureError):
        _verify(parties, env)


def test_tampered_ciphertext_signed_again_does_not_decrypt(parties: Parties) -> None:
    env = _seal(parties).envelope
    env.ciphertext = _flip(env.ciphertext)
    verified = _verify(parties, _resign(env, parties.consumer))
    with pytest.raises(errors.DecryptionError):
        envelope.open_request_body(verified, parties.hpke)


def test_tampered_signature_is_a_signature_error(parties: Parties) -> None:
    env = _seal(parties).envelope
    env.signature = _flip(env.signature, 8)
    with pytest.raises(errors.SignatureError):
        _verify(parties, env)


def test_wrong_signing_key_is_a_signature_error(parties: Parties) -> None:
    env = _seal(parties).envelope
    with pytest.raises(errors.SignatureError):
        envelope.verify_request(env, parties.provider.public_key(), NOW)


def test_wrong_hpke_key_does_not_decrypt(parties: Parties) -> None:
    verified = _verify(parties, _seal(parties).envelope)
    with pytest.raises(errors.DecryptionError):
        envelope.open_request_body(verified, crypto.generate_hpke_key())


def test_expired_envelope(parties: Parties) -> None:
    env = _seal(parties, deadline_ms=0).envelope
    with pytest.raises(errors.EnvelopeExpiredError):
        _verify(parties, env, NOW + envelope.DEFAULT_MAX_AGE + timedelta(milliseconds=1))
    _verify(parties, env, NOW + envelope.DEFAULT_MAX_AGE)  # the edge is still fresh


def test_envelope_past_its_deadline(parties: Parties) -> None:
    env = _seal(parties, deadline_ms=_ms(NOW + timedelta(seconds=2))).envelope
    with pytest.raises(errors.EnvelopeExpiredError):
        _verify(parties, env, NOW + timedelta(seconds=3))


def test_message_from_the_future(parties: Parties) -> None:
    env = _seal(parties, issued_at_ms=_ms(NOW + timedelta(seconds=6))).envelope
    with pytest.raises(errors.EnvelopeFromFutureError):
        _verify(parties, env)
    ok = _seal(parties, issued_at_ms=_ms(NOW + timedelta(seconds=4))).envelope
    _verify(parties, ok)  # within the allowed clock skew


@pytest.mark.parametrize("version", [0, 2, 999])
def test_unsupported_protocol_version(parties: Parties, version: int) -> None:
    env = _seal(parties, protocol_version=version).envelope
    with pytest.raises(errors.ProtocolVersionError):
        _verify(parties, env)


def test_ciphertext_moved_to_another_envelope(parties: Parties) -> None:
    first = _seal(parties).envelope
    second = _seal(parties, message_id="01937a3e-0000-7000-8000-000000000002").envelope
    moved = _resign(
        exchange_pb2.SignedEnvelope(header=second.header, ciphertext=first.ciphertext),
        parties.consumer,
    )
    verified = _verify(parties, moved)
    with pytest.raises(errors.DecryptionError):
        envelope.open_request_body(verified, parties.hpke)


def test_response_to_another_request(parties: Parties) -> None:
    first, second = _seal(parties), _seal(parties)
    answer = _answer(parties, first)
    with pytest.raises(errors.RequestHashMismatchError):
        _open(parties, second, answer, response_key=first.response_key)


def test_response_signed_by_another_key(parties: Parties) -> None:
    sealed = _seal(parties)
    with pytest.raises(errors.SignatureError):
        _open(
            parties,
            sealed,
            _answer(parties, sealed),
            provider_signing_key=parties.consumer.public_key(),
        )


def test_response_tampered_then_signed_again_does_not_decrypt(parties: Parties) -> None:
    sealed = _seal(parties)
    answer = _answer(parties, sealed)
    answer.ciphertext = _flip(answer.ciphertext)
    with pytest.raises(errors.SignatureError):
        _open(parties, sealed, answer)
    with pytest.raises(errors.DecryptionError):
        _open(parties, sealed, _resign(answer, parties.provider))


def test_response_under_another_response_key(parties: Parties) -> None:
    sealed = _seal(parties)
    with pytest.raises(errors.DecryptionError):
        _open(parties, sealed, _answer(parties, sealed), response_key=crypto.new_salt())


def test_response_with_downgraded_version(parties: Parties) -> None:
    sealed = _seal(parties)
    with pytest.raises(errors.ProtocolVersionError):
        _open(parties, sealed, _answer(parties, sealed, protocol_version=0))


def test_body_without_a_response_key_is_malformed(parties: Parties) -> None:
    header = _header()
    header.signing_key_id = parties.consumer.key_id
    header_bytes = header.SerializeToString(deterministic=True)
    info = envelope.REQUEST_INFO + hashlib.sha256(header_bytes).digest()
    body = exchange_pb2.RequestBody(subject=SUBJECT, response_key=b"short").SerializeToString()
    ciphertext = crypto.hpke_seal(parties.hpke.public_key(), body, info)
    env = _resign(
        exchange_pb2.SignedEnvelope(header=header_bytes, ciphertext=ciphertext), parties.consumer
    )
    with pytest.raises(errors.MalformedError):
        envelope.open_request_body(_verify(parties, env), parties.hpke)


def test_body_that_is_not_a_request_body_is_malformed(parties: Parties) -> None:
    header_bytes = _header().SerializeToString(deterministic=True)
    info = envelope.REQUEST_INFO + hashlib.sha256(header_bytes).digest()
    ciphertext = crypto.hpke_seal(parties.hpke.public_key(), b"\xff\xff\xff\xff", info)
    env = _resign(
        exchange_pb2.SignedEnvelope(header=header_bytes, ciphertext=ciphertext), parties.consumer
    )
    with pytest.raises(errors.MalformedError):
        envelope.open_request_body(_verify(parties, env), parties.hpke)


# --- malformed envelopes ------------------------------------------------------------------------


def _signed(
    header: bytes, ciphertext: bytes = b"c" * 64
) -> Callable[[Parties], exchange_pb2.SignedEnvelope]:
    def make(p: Parties) -> exchange_pb2.SignedEnvelope:
        return _resign(
            exchange_pb2.SignedEnvelope(header=header, ciphertext=ciphertext), p.consumer
        )

    return make


def _raw(**fields: bytes) -> Callable[[Parties], exchange_pb2.SignedEnvelope]:
    return lambda p: exchange_pb2.SignedEnvelope(**fields)


MALFORMED: list[tuple[str, Callable[[Parties], exchange_pb2.SignedEnvelope], type[errors.CdxError]]] = [
    ("empty", _raw(), errors.MalformedError),
    ("no_signature", _raw(header=b"\x08\x01", ciphertext=b"x"), errors.MalformedError),
    ("no_header", _raw(ciphertext=b"x", signature=b"s"), errors.MalformedError),
    ("header_too_large", _raw(header=b"h" * (envelope.MAX_HEADER_BYTES + 1), signature=b"s"),
     errors.LimitExceededError),
    ("ciphertext_too_large", _raw(header=b"h", ciphertext=b"c" * (envelope.MAX_CIPHERTEXT_BYTES + 1),
                                  signature=b"s"), errors.LimitExceededError),
    ("signature_too_large", _raw(header=b"h", signature=b"s" * (envelope.MAX_SIGNATURE_BYTES + 1)),
     errors.LimitExceededError),
    ("header_not_protobuf", _signed(b"\xff\xff\xff\xff"), errors.MalformedError),
    ("header_truncated", _signed(_header().SerializeToString()[:-3]), errors.MalformedError),
    ("header_without_message_id", _signed(_header(message_id="").SerializeToString()),
     errors.MalformedError),
    ("header_without_client", _signed(_header(client="").SerializeToString()), errors.MalformedError),
    ("too_many_fields", _signed(_header(fields=[f"f{i}" for i in range(envelope.MAX_FIELDS + 1)])
                                .SerializeToString()), errors.LimitExceededError),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "error"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_envelope_raises_exactly_its_error(
    parties: Parties,
    make: Callable[[Parties], exchange_pb2.SignedEnvelope],
    error: type[errors.CdxError],
) -> None:
    env = make(parties)
    with pytest.raises(errors.CdxError) as caught:
        envelope.parse_unverified_header(env)
        _verify(parties, env)
    assert type(caught.value) is error


@pytest.mark.parametrize(
    ("make", "error"),
    [
        m[1:]
        for m in MALFORMED
        if m[0] not in ("header_without_message_id", "header_without_client")
    ],
    ids=[
        m[0]
        for m in MALFORMED
        if m[0] not in ("header_without_message_id", "header_without_client")
    ],
)
def test_malformed_envelope_is_refused_by_verify_request(
    parties: Parties,
    make: Callable[[Parties], exchange_pb2.SignedEnvelope],
    error: type[errors.CdxError],
) -> None:
    with pytest.raises(errors.CdxError) as caught:
        _verify(parties, make(parties))
    assert type(caught.value) is error


def test_malformed_response_is_refused(parties: Parties) -> None:
    sealed = _seal(parties)
    for bad in (
        exchange_pb2.SignedEnvelope(),
        exchange_pb2.SignedEnvelope(header=b"h" * (envelope.MAX_HEADER_BYTES + 1), signature=b"s"),
        _resign(exchange_pb2.SignedEnvelope(header=b"\xff\xff", ciphertext=b"x"), parties.provider),
    ):
        with pytest.raises((errors.MalformedError, errors.LimitExceededError)):
            _open(parties, sealed, bad)
