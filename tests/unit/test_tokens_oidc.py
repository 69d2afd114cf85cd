"""cdx.tokens for OpenID Connect providers (keys from a JWKS), and cdx.jwks's cache: pinned
algorithms, key choice by kid, audiences and azp, nonce, claim mappings, discovery checks,
rotation and the refetch rate limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cdx import errors
from cdx.globalconf import IdentityProviderInfo
from cdx.jwks import ProviderCache, parse_discovery
from cdx.tokens import (
    KeySet,
    check_provider_url,
    parse_jwks,
    verify_token,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://id.example.gov.vn"
CITIZEN = "001234567890"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def provider(**kw: Any) -> IdentityProviderInfo:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "public_key_der": b"",
        "development": False,
        "audience": "cdx-portal",
        "algorithms": ("RS256", "ES256"),
    }
    args.update(kw)
    return IdentityProviderInfo(**args)


def jwk(key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.RSAAlgorithm
        if isinstance(key, rsa.RSAPrivateKey)
        else jwt.algorithms.ECAlgorithm
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else jwt.algorithms.OKPAlgorithm
    )
    out: dict[str, Any] = algorithm.to_jwk(key.public_key(), as_dict=True)
    out.update(kid=kid, **extra)
    return out


KEYS = parse_jwks({"keys": [jwk(RSA_KEY, "r1"), jwk(EC_KEY, "e1")]})


def claims(**overrides: Any) -> dict[str, Any]:
    iat = int(NOW.timestamp())
    out: dict[str, Any] = {"iss": ISSUER, "sub": "pairwise-7", "aud": "cdx-portal", "iat": iat}
    out.update({"exp": iat + 600, "national_id": CITIZEN})
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str = "r1") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def verify(token: str, p: IdentityProviderInfo | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {"now": NOW, "production": True, "instance": "VN"}
    args["key_sets"] = {ISSUER: KEYS}
    args.update(kw)
    return verify_token(token, [p or provider(national_id_claim="national_id")], **args)


def test_rs256_and_es256_tokens_verify_by_kid() -> None:
    assert verify(sign(claims())).subject.value == CITIZEN
    assert verify(sign(claims(), EC_KEY, "ES256", "e1")).subject.value == CITIZEN


def test_algorithm_must_be_pinned_for_the_provider() -> None:
    only_es = provider(algorithms=("ES256",), national_id_claim="national_id")
    with pytest.raises(errors.TokenAlgorithmError):
        verify(sign(claims()), only_es)


def test_token_signed_with_a_key_of_the_wrong_type_for_its_alg_is_refused() -> None:
    # kid names the EC key but the header claims RS256: the key type decides, not the header
    with pytest.raises(errors.TokenKeyUnknownError):
        verify(sign(claims(), RSA_KEY, "RS256", "e1"))


def test_unknown_kid_asks_for_a_refetch() -> None:
    with pytest.raises(errors.TokenKeyUnknownError):
        verify(sign(claims(), kid="r9"))


def test_forgery_under_a_known_kid_is_a_signature_error() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(errors.TokenSignatureError):
        verify(sign(claims(), other))


def test_several_audiences_need_azp_naming_the_client() -> None:
    with pytest.raises(errors.TokenAudienceError):
        verify(sign(claims(aud=["cdx-portal", "other"])))
    assert verify(sign(claims(aud=["cdx-portal", "other"], azp="cdx-portal"))).subject
    with pytest.raises(errors.TokenAudienceError):
        verify(sign(claims(azp="other")))


def test_cli_tokens_reach_the_services_but_not_a_portal_login() -> None:
    p = provider(national_id_claim="national_id", cli_client_id="cdx-cli")
    token = sign(claims(aud="cdx-cli"))
    assert verify(token, p).subject.value == CITIZEN
    with pytest.raises(errors.TokenAudienceError):
        verify(token, p, client_id="cdx-portal")


def test_nonce_is_checked_only_at_login_and_must_match() -> None:
    token = sign(claims(nonce="n-1"))
    assert verify(token, nonce="n-1").subject
    with pytest.raises(errors.TokenNonceError):
        verify(token, nonce="n-2")
    with pytest.raises(errors.TokenNonceError):
        verify(sign(claims()), nonce="n-1")


def test_claim_mappings_decide_the_national_id_and_the_inspector() -> None:
    p = provider(national_id_claim="pid", inspector_claim="groups", inspector_value="dpa")
    assert verify(sign(claims(pid=CITIZEN)), p).subject.value == CITIZEN
    with pytest.raises(errors.TokenError, match="no national id"):
        verify(sign(claims()), p)
    inspector = verify(sign(claims(groups=["staff", "dpa"])), p)
    assert inspector.role == "inspector" and inspector.subject is None
    assert verify(sign(claims(groups="dpa")), p).role == "inspector"
    # a claim named like the default mapping means nothing under another mapping
    assert verify(sign(claims(pid=CITIZEN, role="inspector")), p).role == "citizen"


def test_static_keys_and_development_providers_are_refused_in_production() -> None:
    from cdx import crypto

    static = IdentityProviderInfo(
        ISSUER, crypto.public_key_to_der(ED_KEY.public_key()), False, "cdx-portal"
    )
    token = jwt.encode(claims(sub=CITIZEN), ED_KEY, algorithm="EdDSA")
    assert verify_token(token, [static], now=NOW, production=False).subject
    with pytest.raises(errors.TokenError, match="static-key"):
        verify_token(token, [static], now=NOW, production=True)
    with pytest.raises(errors.TokenError, match="development"):
        verify(sign(claims()), provider(development=True))


def test_acting_for_is_empty_until_representation_exists() -> None:
    result = verify(sign(claims()))
    assert result.acting_for is None and result.data_subject == result.subject


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        {"keys": "x"},
        {"keys": []},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]},
        {"keys": [jwk(RSA_KEY, "enc", use="enc")]},
        {"keys": [{**jwk(RSA_KEY, "p"), "d": "AAAA"}]},
        {"keys": [{"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"}]},
        {"keys": [jwk(RSA_KEY, str(i)) for i in range(40)]},
    ],
)
def test_unusable_jwks_documents_are_malformed(document: Any) -> None:
    with pytest.raises(errors.MalformedError):
        parse_jwks(document)


def test_duplicate_kids_keep_the_first_key() -> None:
    keys = parse_jwks({"keys": [jwk(RSA_KEY, "a"), jwk(EC_KEY, "a")]})
    assert len(keys.keys) == 1


@pytest.mark.parametrize(
    ("url", "production", "ok"),
    [
        ("https://id.gov.vn", True, True),
        ("https://id.gov.vn/realms/citizens", True, True),
        ("http://127.0.0.1:8090", False, True),
        ("http://localhost:8090", False, True),
        ("http://127.0.0.1:8090", True, False),
        ("http://id.gov.vn", False, False),
        ("https://user:pw@id.gov.vn", True, False),
        ("https://id.gov.vn?x=1", True, False),
        ("https://id.gov.vn#f", True, False),
        ("ftp://id.gov.vn", False, False),
        ("https://", True, False),
        ("https://id.gov.vn:99999", True, False),
    ],
)
def test_provider_urls(url: str, production: bool, ok: bool) -> None:
    if ok:
        check_provider_url(url, production=production)
    else:
        with pytest.raises(errors.InvalidArgumentError):
            check_provider_url(url, production=production)


def _discovery(**overrides: Any) -> bytes:
    doc = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
    }
    doc.update(overrides)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        _discovery(issuer="https://evil.example"),
        _discovery(issuer=ISSUER + "/"),
        _discovery(jwks_uri=None),
        _discovery(token_endpoint="http://id.example.gov.vn/token"),
        _discovery(authorization_endpoint=7),
    ],
)
def test_bad_discovery_documents_are_malformed(raw: bytes) -> None:
    with pytest.raises(errors.MalformedError):
        parse_discovery(raw, ISSUER, production=True)


class Published:
    """What a provider serves, changeable; counts fetches."""

    def __init__(self) -> None:
        self.keys = [jwk(RSA_KEY, "r1")]
        self.fetches: list[str] = []
        self.down = False

    def __call__(self, url: str) -> bytes:
        self.fetches.append(url)
        if self.down:
            raise errors.IdentityProviderUnavailableError()
        if url.endswith("/jwks"):
            return json.dumps({"keys": self.keys}).encode()
        return _discovery()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cache(published: Published, clock: Clock) -> ProviderCache:
    return ProviderCache(fetch=published, clock=clock, ttl=600, min_refresh=30, max_stale=3600)


def test_keys_are_cached_until_their_ttl() -> None:
    published, clock = Published(), Clock()
    c = cache(published, clock)
    first = c.keys(provider(), production=True)
    clock.now = 599
    assert c.keys(provider(), production=True) is first
    assert len(published.fetches) == 2  # discovery + JWKS once
    clock.now = 601
    assert c.keys(provider(), production=True) is not first


def test_forced_refresh_is_rate_limited() -> None:
    published, clock = Published(), Clock()
    c = cache(published, clock)
    first = c.keys(provider(), production=True)
    published.keys = [jwk(EC_KEY, "e2")]
    clock.now = 10
    assert c.keys(provider(), production=True, refresh=True) is first  # too soon
    clock.now = 31
    rotated = c.keys(provider(), production=True, refresh=True)
    assert isinstance(rotated, KeySet) and rotated.keys[0].key_id == "e2"


def test_provider_down_keeps_the_last_keys_for_a_while_then_fails() -> None:
    published, clock = Published(), Clock()
    c = cache(published, clock)
    first = c.keys(provider(), production=True)
    published.down = True
    clock.now = 700
    assert c.keys(provider(), production=True) is first
    fetched = len(published.fetches)
    clock.now = 710
    assert c.keys(provider(), production=True) is first
    assert len(published.fetches) == fetched  # no retry before min_refresh
    clock.now = 3700
    with pytest.raises(errors.IdentityProviderUnavailableError):
        c.keys(provider(), production=True)


def test_never_fetched_provider_down_backs_off() -> None:
    published, clock = Published(), Clock()
    published.down = True
    c = cache(published, clock)
    with pytest.raises(errors.IdentityProviderUnavailableError):
        c.keys(provider(), production=True)
    with pytest.raises(errors.IdentityProviderUnavailableError):
        c.keys(provider(), production=True)
    assert len(published.fetches) == 1
    clock.now = 6
    published.down = False
    assert c.keys(provider(), production=True).keys


def test_an_issuer_url_not_allowed_is_never_fetched() -> None:
    published, clock = Published(), Clock()
    c = cache(published, clock)
    with pytest.raises(errors.InvalidArgumentError):
        c.keys(provider(issuer="http://id.example.gov.vn"), production=True)
    assert published.fetches == []


def test_token_lifetime_is_bounded() -> None:
    with pytest.raises(errors.TokenError, match="longer"):
        verify(sign(claims(exp=int(NOW.timestamp()) + 3 * 86400)))
