"""Unit tests for cdx.tokens: citizen/inspector tokens from registered identity providers."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cdx import crypto, errors
from cdx.globalconf import IdentityProviderInfo
from cdx.tokens import TokenClaims, algorithm_for, issue_token, verify_token

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CITIZEN = "001234567890"
AUD = "cdx:VN"
ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ISSUER = "https://id.example.gov.vn"
DEV_ISSUER = "cdx-dev-idp:VN"


def idp(
    key: Any = ED_KEY, issuer: str = ISSUER, *, development: bool = False, audience: str = ""
) -> IdentityProviderInfo:
    return IdentityProviderInfo(
        issuer, crypto.public_key_to_der(key.public_key()), development, audience
    )


def token(key: Any = ED_KEY, issuer: str = ISSUER, **kw: Any) -> str:
    args: dict[str, Any] = {
        "subject": CITIZEN,
        "role": "citizen",
        "audience": AUD,
        "now": NOW,
        "ttl": timedelta(minutes=15),
    }
    args.update(kw)
    return issue_token(key, issuer, **args)


def verify(tok: str, providers: list[IdentityProviderInfo] | None = None, **kw: Any) -> TokenClaims:
    args: dict[str, Any] = {"audience": AUD, "now": NOW, "production": False}
    args.update(kw)
    return verify_token(tok, providers if providers is not None else [idp()], **args)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    iat = int(NOW.timestamp())
    out: dict[str, Any] = {
        "iss": ISSUER,
        "sub": CITIZEN,
        "aud": AUD,
        "iat": iat,
        "exp": iat + 600,
        "role": "citizen",
    }
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def signed(payload: dict[str, Any], key: Any = ED_KEY, alg: str = "EdDSA") -> str:
    return jwt.encode(payload, key, algorithm=alg)


# --- happy paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ED_KEY, EC_KEY], ids=["ed25519", "p256"])
def test_citizen_token_round_trip(key: Any) -> None:
    got = verify(token(key, name="Nguyen Van A"), [idp(key)])
    assert got.role == "citizen"
    assert got.subject is not None and got.subject.value == CITIZEN
    assert got.issuer == ISSUER
    assert got.name == "Nguyen Van A"
    assert got.expires_at == NOW + timedelta(minutes=15)
    assert CITIZEN not in repr(got) and "Nguyen" not in repr(got)


def test_inspector_token_has_no_citizen_subject() -> None:
    got = verify(token(subject="dpa-inspector-7", role="inspector"))
    assert got.role == "inspector" and got.subject is None
    assert got.principal == "dpa-inspector-7"


def test_missing_role_means_citizen() -> None:
    assert verify(signed(claims(role=None))).role == "citizen"


def test_algorithm_follows_the_key_type() -> None:
    assert algorithm_for(ED_KEY.public_key()) == "EdDSA"
    assert algorithm_for(EC_KEY.public_key()) == "ES256"
    header = jwt.get_unverified_header(token(EC_KEY))
    assert header["alg"] == "ES256" and header["kid"] == crypto.key_id(EC_KEY.public_key())


def test_rotated_keys_of_one_issuer_both_verify() -> None:
    old, new = idp(ED_KEY), idp(EC_KEY)
    assert verify(token(ED_KEY), [new, old]).issuer == ISSUER
    assert verify(token(EC_KEY), [old, new]).issuer == ISSUER


def test_idp_registered_audience_is_enforced() -> None:
    provider = idp(audience="portal-client-id")
    assert verify(token(audience="portal-client-id"), [provider]).role == "citizen"
    with pytest.raises(errors.TokenAudienceError):
        verify(token(), [provider])


# --- refusals ----------------------------------------------------------------------------------


def test_forged_token_is_refused() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(errors.TokenError) as info:
        verify(token(other))
    assert type(info.value) is errors.TokenSignatureError


def test_tampered_payload_is_refused() -> None:
    header, _payload, sig = token().split(".")
    forged = b64(json.dumps(claims(sub="009999999999")).encode())
    with pytest.raises(errors.TokenError):
        verify(f"{header}.{forged}.{sig}")


def test_expired_token_is_refused() -> None:
    with pytest.raises(errors.TokenExpiredError):
        verify(token(), now=NOW + timedelta(minutes=20))
    # inside the leeway it still passes
    assert verify(token(), now=NOW + timedelta(minutes=15, seconds=30)).role == "citizen"


def test_wrong_audience_is_refused() -> None:
    with pytest.raises(errors.TokenAudienceError):
        verify(token(audience="another-relying-party"))
    with pytest.raises(errors.TokenAudienceError):
        verify(signed(claims(aud=None)))


def test_development_idp_is_refused_in_production() -> None:
    providers = [idp(issuer=DEV_ISSUER, development=True)]
    tok = token(issuer=DEV_ISSUER)
    assert verify(tok, providers).issuer == DEV_ISSUER
    with pytest.raises(errors.TokenError, match="production"):
        verify(tok, providers, production=True)


def test_unknown_issuer_is_refused() -> None:
    with pytest.raises(errors.TokenError, match="issuer"):
        verify(token(issuer="https://evil.example"))


def test_header_algorithm_is_never_trusted() -> None:
    public_der = crypto.public_key_to_der(ED_KEY.public_key())
    # HS256 keyed with the public key bytes (the classic algorithm-confusion attack)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    import hashlib
    import hmac

    mac = hmac.new(public_der, f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(errors.TokenError):
        verify(f"{header}.{body}.{b64(mac)}")
    none_header = b64(json.dumps({"alg": "none"}).encode())
    with pytest.raises(errors.TokenError):
        verify(f"{none_header}.{body}.")
    # A P-256 token presented for an Ed25519-registered issuer
    with pytest.raises(errors.TokenError):
        verify(token(EC_KEY))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "a.b.c",
        "x" * 9000,
        "eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.AAAA",
    ],
)
def test_malformed_tokens_raise_token_error(bad: str) -> None:
    with pytest.raises(errors.TokenError):
        verify(bad)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": None},
        {"iat": None},
        {"exp": "soon"},
        {"iat": True},
        {"iat": int(NOW.timestamp()) + 3600, "exp": int(NOW.timestamp()) + 4000},
        {"nbf": int(NOW.timestamp()) + 3600},
        {"exp": int(NOW.timestamp()) + 3 * 86400},
        {"role": "admin"},
        {"sub": None},
        {"sub": ""},
        {"sub": "not a national id!"},
        {"name": 7},
        {"iss": None},
    ],
)
def test_invalid_claims_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(errors.TokenError):
        verify(signed(claims(**overrides)))


def test_instance_format_of_national_id() -> None:
    tok = token(subject="AB12345")
    assert verify(tok).subject is not None
    with pytest.raises(errors.TokenError):
        verify(tok, instance="VN")
    assert verify(token(), instance="VN").subject is not None


def test_error_messages_never_carry_the_subject_or_token() -> None:
    tok = token(audience="other")
    with pytest.raises(errors.TokenError) as info:
        verify(tok)
    assert CITIZEN not in str(info.value) and tok not in str(info.value)


@pytest.mark.parametrize(
    "kw",
    [
        {"role": "root"},
        {"ttl": timedelta(0)},
        {"ttl": timedelta(days=2)},
        {"audience": ""},
        {"subject": ""},
    ],
)
def test_issue_token_refuses_bad_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        token(**kw)
