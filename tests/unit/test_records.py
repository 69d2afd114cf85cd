"""Unit tests for access records: signing/verifying (cdx.records) and building them from
decisions with salted commitments (security_server.records)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx import crypto, errors, records
from cdx.v1 import audit_pb2, common_pb2
from security_server.records import (
    NOTE_UNVERIFIED,
    PLACEHOLDER,
    Decision,
    build_record,
    open_commitment,
    request_value,
    sign_item,
)

NOW = datetime(2025, 11, 28, 12, 0, 0, tzinfo=UTC)
SUBJECT = "079090000001"
RECORDER = "VN:GOV:BCA:ss1"


@pytest.fixture(scope="module", params=["ecdsa-p256", "ed25519"])
def signer(request: pytest.FixtureRequest) -> crypto.KeySigner:
    return crypto.KeySigner(crypto.generate_signing_key(request.param))


def _record(**changes: object) -> audit_pb2.AccessRecord:
    fields: dict[str, object] = {
        "record_id": "01937a3e-0000-7000-8000-0000000000aa",
        "message_id": "01937a3e-0000-7000-8000-000000000001",
        "time_ms": 1764331200000,
        "recorder": RECORDER,
        "role": common_pb2.PROVIDER,
        "client": "VN:GOV:VSS:benefits",
        "service": "VN:GOV:BCA:population/person/v1",
        "purpose": "SOCIAL_BENEFIT_ELIGIBILITY",
        "decision": common_pb2.ALLOW,
        "reason_code": "ok",
    }
    fields.update(changes)
    return audit_pb2.AccessRecord(**fields)  # type: ignore[arg-type]


def _flip(data: bytes, index: int = -1) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --- cdx.records ------------------------------------------------------------------------------


def test_sign_and_verify_round_trip(signer: crypto.KeySigner) -> None:
    signed = records.sign_access_record(_record(), signer)
    assert signed.key_id == signer.key_id
    assert records.verify_access_record(signed, signer.public_key()) == _record()


def test_signature_covers_the_domain_separated_bytes(signer: crypto.KeySigner) -> None:
    signed = records.sign_access_record(_record(), signer)
    crypto.verify(signer.public_key(), signed.signature, b"cdx/access-record/v1\n" + signed.record)
    with pytest.raises(errors.SignatureError):
        crypto.verify(signer.public_key(), signed.signature, signed.record)


def test_record_bytes_are_deterministic(signer: crypto.KeySigner) -> None:
    a = records.sign_access_record(_record(released_fields=["a", "b"]), signer)
    b = records.sign_access_record(_record(released_fields=["a", "b"]), signer)
    assert a.record == b.record


def test_tampered_record_does_not_verify(signer: crypto.KeySigner) -> None:
    signed = records.sign_access_record(_record(), signer)
    signed.record = _flip(signed.record, 20)
    with pytest.raises(errors.SignatureError):
        records.verify_access_record(signed, signer.public_key())


def test_tampered_signature_does_not_verify(signer: crypto.KeySigner) -> None:
    signed = records.sign_access_record(_record(), signer)
    signed.signature = _flip(signed.signature, 5)
    with pytest.raises(errors.SignatureError):
        records.verify_access_record(signed, signer.public_key())


def test_another_key_does_not_verify(signer: crypto.KeySigner) -> None:
    signed = records.sign_access_record(_record(), signer)
    other = crypto.generate_signing_key("ecdsa-p256").public_key()
    with pytest.raises(errors.SignatureError):
        records.verify_access_record(signed, other)


def test_key_id_is_only_a_hint(signer: crypto.KeySigner) -> None:
    signed = records.sign_access_record(_record(), signer)
    signed.key_id = "0" * 64  # lying about the key changes nothing: the verifier picks the key
    assert records.verify_access_record(signed, signer.public_key()).record_id


def _signed_bytes(signer: crypto.Signer, record_bytes: bytes) -> audit_pb2.SignedAccessRecord:
    return audit_pb2.SignedAccessRecord(
        record=record_bytes,
        signature=signer.sign(records.record_signing_input(record_bytes)),
        key_id=signer.key_id,
    )


MALFORMED = [
    ("empty", lambda s: audit_pb2.SignedAccessRecord(), errors.MalformedError),
    ("no_signature", lambda s: audit_pb2.SignedAccessRecord(record=b"\x0a\x01x"),
     errors.MalformedError),
    ("record_too_large", lambda s: audit_pb2.SignedAccessRecord(
        record=b"x" * (records.MAX_RECORD_BYTES + 1), signature=b"s"), errors.LimitExceededError),
    ("signature_too_large", lambda s: audit_pb2.SignedAccessRecord(
        record=b"x", signature=b"s" * (records.MAX_SIGNATURE_BYTES + 1)), errors.LimitExceededError),
    ("not_protobuf", lambda s: _signed_bytes(s, b"\xff\xff\xff"), errors.MalformedError),
    ("no_record_id", lambda s: _signed_bytes(s, _record(record_id="").SerializeToString()),
     errors.MalformedError),
    ("no_recorder", lambda s: _signed_bytes(s, _record(recorder="").SerializeToString()),
     errors.MalformedError),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "error"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_signed_records(signer: crypto.KeySigner, make, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.CdxError) as caught:
        records.verify_access_record(make(signer), signer.public_key())
    assert type(caught.value) is error


def test_sign_refuses_an_oversized_record(signer: crypto.KeySigner) -> None:
    with pytest.raises(errors.LimitExceededError):
        records.sign_access_record(_record(note="n" * records.MAX_RECORD_BYTES), signer)


def test_parse_unverified_names_the_recorder(signer: crypto.KeySigner) -> None:
    signed = records.sign_access_record(_record(), signer)
    assert records.parse_unverified_record(signed).recorder == RECORDER
    with pytest.raises(errors.MalformedError):
        records.parse_unverified_record(
            _signed_bytes(signer, _record(recorder="").SerializeToString())
        )
    with pytest.raises(errors.LimitExceededError):
        records.parse_unverified_record(audit_pb2.SignedAccessRecord(record=b"x", key_id="k" * 200))


# --- security_server.records -----------------------------------------------------------------


def _decision(**changes: object) -> Decision:
    d = Decision(
        role=common_pb2.PROVIDER,
        message_id="m-1",
        client="VN:GOV:VSS:benefits",
        service="VN:GOV:BCA:population/person/v1",
        purpose="SOCIAL_BENEFIT_ELIGIBILITY",
        released_fields=("full_name", "birth_date"),
        subject=SUBJECT,
        request_value=request_value(SUBJECT, None),
        response_value=b"response body bytes",
        verified=True,
    )
    for key, value in changes.items():
        setattr(d, key, value)
    return d


def test_allow_record_commits_to_subject_request_and_response() -> None:
    record, opening = build_record(
        _decision(), recorder=RECORDER, allowed=True, reason_code="ok", now=NOW
    )
    assert record.decision == common_pb2.ALLOW and record.reason_code == "ok"
    assert list(record.released_fields) == ["birth_date", "full_name"]  # sorted
    assert record.record_id == opening.record_id and opening.subject == SUBJECT
    assert open_commitment(opening.subject_salt, SUBJECT.encode(), record.subject_commitment)
    assert open_commitment(
        opening.request_salt, request_value(SUBJECT, None), record.request_commitment
    )
    assert open_commitment(
        opening.response_salt, b"response body bytes", record.response_commitment
    )
    assert not open_commitment(opening.subject_salt, b"079090000002", record.subject_commitment)
    assert record.time_ms == int(NOW.timestamp() * 1000)
    assert record.note == "" and record.kind == "access"


def test_record_never_holds_the_subject_or_values_in_clear() -> None:
    record, _ = build_record(
        _decision(), recorder=RECORDER, allowed=True, reason_code="ok", now=NOW
    )
    raw = record.SerializeToString()
    assert SUBJECT.encode() not in raw and b"response body bytes" not in raw


def test_salts_are_fresh_so_equal_subjects_do_not_link() -> None:
    a, _ = build_record(_decision(), recorder=RECORDER, allowed=True, reason_code="ok", now=NOW)
    b, _ = build_record(_decision(), recorder=RECORDER, allowed=True, reason_code="ok", now=NOW)
    assert a.subject_commitment != b.subject_commitment
    assert a.record_id != b.record_id


def test_deny_record_releases_nothing() -> None:
    record, opening = build_record(
        _decision(), recorder=RECORDER, allowed=False, reason_code="field_not_allowed", now=NOW
    )
    assert record.decision == common_pb2.DENY and record.reason_code == "field_not_allowed"
    assert not record.released_fields and not record.response_commitment
    assert not opening.response_salt


def test_denial_before_decryption_has_no_subject_commitment() -> None:
    d = Decision(role=common_pb2.PROVIDER, client="VN:GOV:VSS:benefits")
    record, opening = build_record(
        d, recorder=RECORDER, allowed=False, reason_code="invalid_signature", now=NOW
    )
    assert record.subject_commitment == b"" and record.request_commitment == b""
    assert opening.subject == "" and opening.subject_salt == b""
    assert record.note == NOTE_UNVERIFIED


def test_sealed_decision_makes_a_sealed_record() -> None:
    record, _ = build_record(
        _decision(sealed=True), recorder=RECORDER, allowed=True, reason_code="ok", now=NOW
    )
    assert record.visibility == common_pb2.SEALED


def test_request_value_is_the_same_on_both_sides() -> None:
    params = struct_pb2.Struct()
    params.update({"year": 2024, "b": "x", "a": True})
    again = struct_pb2.Struct()
    again.update({"a": True, "year": 2024, "b": "x"})
    assert request_value(SUBJECT, params) == request_value(SUBJECT, again)
    assert request_value(SUBJECT, params) != request_value(SUBJECT, None)
    assert request_value(SUBJECT, struct_pb2.Struct()) == request_value(SUBJECT, None)


def test_signed_item_verifies(signer: crypto.KeySigner) -> None:
    record, opening = build_record(
        _decision(), recorder=RECORDER, allowed=True, reason_code="ok", now=NOW
    )
    item = sign_item(record, opening, signer)
    assert records.verify_access_record(item.record, signer.public_key()) == record
    assert item.opening == opening


@settings(max_examples=30, deadline=None)
@given(subject=st.from_regex(r"[0-9A-Za-z]{6,20}", fullmatch=True), body=st.binary(max_size=256))
def test_commitments_open_only_with_their_salt(subject: str, body: bytes) -> None:
    d = _decision(subject=subject, response_value=body)
    record, opening = build_record(d, recorder=RECORDER, allowed=True, reason_code="ok", now=NOW)
    assert open_commitment(opening.subject_salt, subject.encode(), record.subject_commitment)
    assert open_commitment(opening.response_salt, body, record.response_commitment)
    assert not open_commitment(opening.request_salt, subject.encode(), record.subject_commitment)


def test_free_text_is_kept_without_control_characters_or_its_excess() -> None:
    from security_server.records import MAX_RECORD_TEXT, clean_text

    assert clean_text("Law 30/2021, art. 5") == "Law 30/2021, art. 5"
    hostile = "Law\x00 30\n\x1b[31m" + "x" * 5000
    cleaned = clean_text(hostile)
    assert len(cleaned) == MAX_RECORD_TEXT
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in cleaned)
    assert cleaned.startswith("Law\ufffd 30\ufffd\ufffd[31m")


MALFORMED_CLAIMS = [
    ("message_id", "m 1"), ("message_id", "m" * 65), ("message_id", "m\x00"),
    ("client", "VN:GOV\x00:BCA:population"), ("client", "VN:GOV:XYZ"), ("client", "x" * 5000),
    ("client", "VN:GOV:BCA:population\n\x1b[31m"), ("service", "VN:GOV:XYZ:pop"),
    ("service", "VN:GOV:BCA:population/a b"), ("purpose", "BENEFIT\x00"),
    ("purpose", "lower_case"), ("purpose", "'; DROP TABLE ss_outbox; --"),
    ("consent_id", "c\u202e1"), ("consent_id", "c" * 129),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "claim"), MALFORMED_CLAIMS)
def test_denial_records_carry_a_placeholder_for_every_malformed_claim(
    kind: str, claim: str
) -> None:
    d = _decision(verified=False, **{kind: claim})
    record, _ = build_record(d, recorder=RECORDER, allowed=False, reason_code="malformed", now=NOW)
    assert getattr(record, kind) == PLACEHOLDER
    assert claim.encode() not in record.SerializeToString()
    assert record.reason_code == "malformed"
    kept = {k: getattr(record, k) for k in ("client", "service", "purpose") if k != kind}
    assert kept == {k: getattr(d, k) for k in kept}  # the well-formed claims stay


@pytest.mark.parametrize("subject", ["abc", "", "0790900000011234567890", "07909000000\x00"])
def test_a_subject_that_is_no_national_id_is_neither_committed_nor_opened(subject: str) -> None:
    d = _decision(subject=subject, request_value=request_value(subject, None))
    record, opening = build_record(
        d, recorder=RECORDER, allowed=False, reason_code="invalid_citizen_id", now=NOW
    )
    assert not record.subject_commitment and not record.request_commitment
    assert opening.subject == "" and not opening.subject_salt and not opening.request_salt
    assert record.reason_code == "invalid_citizen_id"


@pytest.mark.parametrize(
    "changes", [{"subject": "abc"}, {"client": "VN:GOV"}, {"consent_id": "c d"}], ids=str
)
def test_a_record_of_released_data_never_holds_an_unvalidated_value(
    changes: dict[str, str],
) -> None:
    with pytest.raises(errors.InternalError):
        build_record(
            _decision(**changes), recorder=RECORDER, allowed=True, reason_code="ok", now=NOW
        )
