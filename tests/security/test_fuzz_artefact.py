"""Fuzzing the consent artefact (compact JWS, EdDSA) verifier: random and mutated artefacts,
and JWS signed by the consent service's key around arbitrary bytes. Only coded CDX errors
escape; a changed artefact never verifies."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st

from cdx import crypto
from cdx.consentpolicy import ConsentTerms
from cdx.errors import MalformedError, SignatureError
from cdx.ids import CitizenId
from consent import artefact

from .fuzzing import expect_error, fuzz_settings, mutated, outcome

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
KEY = ed25519.Ed25519PrivateKey.generate()
SIGNER = crypto.KeySigner(KEY)
TERMS = ConsentTerms(
    subject=CitizenId("079090000001"),
    grantee="VN:GOV:VSS:benefits",
    services=("VN:GOV:GDT:income/income/v1",),
    purpose="SOCIAL_BENEFIT_ELIGIBILITY",
    fields=frozenset({"annual_income"}),
    valid_from=NOW,
    valid_until=NOW + timedelta(days=30),
)
VALID = artefact.sign_artefact(
    SIGNER, TERMS, consent_id="c-1", issuer="urn:cdx:service:consent", issued_at=NOW
)

CLAIMS = artefact.verify_artefact(VALID, KEY.public_key())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@fuzz_settings()
@given(
    jws=st.one_of(
        st.text(max_size=200),
        mutated(VALID.encode()).map(lambda b: b.decode("utf-8", "replace")),
        st.lists(st.text(max_size=30), min_size=3, max_size=3).map(".".join),
    )
)
def test_fuzz_artefact_random_and_mutated(jws: str) -> None:
    result = outcome(artefact.verify_artefact, jws, KEY.public_key())
    if isinstance(result, dict):
        # Base64url lets the last character of a segment carry unused bits, so another string
        # can encode the same bytes; what verifies must still be exactly the signed claims.
        assert result == CLAIMS, result
    else:
        assert jws != VALID and isinstance(result, MalformedError | SignatureError), result


@fuzz_settings()
@given(
    header=st.one_of(
        st.binary(max_size=80),
        st.just(b'{"alg":"EdDSA","typ":"' + artefact.ARTEFACT_TYPE.encode() + b'"}'),
    ),
    payload=st.binary(max_size=200),
)
def test_fuzz_artefact_signed_around_arbitrary_bytes(header: bytes, payload: bytes) -> None:
    """The consent service's own key signs garbage: parsing after verification stays coded."""
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    jws = f"{signing_input}.{_b64(SIGNER.sign(signing_input.encode()))}"
    outcome(artefact.verify_artefact, jws, KEY.public_key())


def test_deeply_nested_artefact_json_is_malformed_not_a_crash() -> None:
    nested = b"[" * 100_000
    header = b'{"alg":"EdDSA","typ":"' + artefact.ARTEFACT_TYPE.encode() + b'"}'
    for head, body in ((nested, b"{}"), (header, nested)):
        signing_input = f"{_b64(head)}.{_b64(body)}"
        jws = f"{signing_input}.{_b64(SIGNER.sign(signing_input.encode()))}"
        expect_error(MalformedError, artefact.verify_artefact, jws, KEY.public_key())


def test_non_ascii_payload_segment_is_malformed_not_a_crash() -> None:
    head, _, sig = VALID.split(".")
    expect_error(
        (MalformedError, SignatureError),
        artefact.verify_artefact,
        f"{head}.é.{sig}",
        KEY.public_key(),
    )
