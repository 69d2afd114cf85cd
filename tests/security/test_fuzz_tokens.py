"""Fuzzing citizen/inspector token verification: random strings, mutated tokens, and tokens
correctly signed by a registered identity provider but carrying arbitrary claims. Only
TokenError and its subclasses escape, and no token lives longer than the rules allow."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cdx import crypto, tokens
from cdx.errors import TokenError
from cdx.globalconf import IdentityProviderInfo

from .fuzzing import expect_error, fuzz_settings, mutated, outcome

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
IDP_KEY = crypto.generate_signing_key("ed25519")
IDP = IdentityProviderInfo(
    issuer="https://idp.cdx.example",
    public_key_der=crypto.public_key_to_der(IDP_KEY.public_key()),
    development=True,
    audience="",
)
VALID = tokens.issue_token(
    IDP_KEY, IDP.issuer, "001099012345", "citizen", "cdx-portal", NOW, timedelta(minutes=5)
)


def _verify(token: str) -> tokens.TokenClaims | Exception:
    return outcome(
        tokens.verify_token,
        token,
        [IDP],
        audience="cdx-portal",
        now=NOW,
        production=False,
        instance="VN",
    )


@fuzz_settings()
@given(
    token=st.one_of(
        st.text(max_size=300),
        mutated(VALID.encode()).map(lambda b: b.decode("utf-8", "replace")),
        st.lists(st.binary(max_size=60), min_size=3, max_size=3).map(
            lambda parts: ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts)
        ),
    )
)
def test_fuzz_random_and_mutated_tokens(token: str) -> None:
    result = _verify(token)
    if token != VALID:
        assert isinstance(result, TokenError), result


_claim_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and infinities included: PyJWT's JSON accepts them
    st.text(max_size=30),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_now = int(NOW.timestamp())
_plausible = {
    "iss": st.just(IDP.issuer),
    "sub": st.sampled_from(["001099012345", "079199000001"]),
    "aud": st.sampled_from(["cdx-portal", ["x", "cdx-portal"]]),
    "exp": st.integers(_now - 120, _now + 90000),
    "iat": st.integers(_now - 90000, _now + 120),
    "nbf": st.integers(_now - 100, _now + 100),
    "role": st.sampled_from(["citizen", "inspector", "admin"]),
    "name": st.text(max_size=30),
}


@st.composite
def _claims(draw: st.DrawFn) -> dict[str, object]:
    """Mostly plausible claims with a few replaced by arbitrary JSON values or left out."""
    claims: dict[str, object] = {}
    for name, plausible in _plausible.items():
        kind = draw(st.sampled_from(["plausible"] * 8 + ["arbitrary", "absent"]))
        if kind == "plausible":
            claims[name] = draw(plausible)
        elif kind == "arbitrary":
            claims[name] = draw(_claim_values)
    return claims


def _signed(claims: dict[str, object], algorithm: str = "EdDSA") -> str:
    """A JWS built by hand: PyJWT would refuse to encode some of the claims we want to send."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": algorithm, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())  # allow_nan: NaN and Infinity go on the wire
    signed = header + b"." + body
    if algorithm == "EdDSA":
        signature = IDP_KEY.sign(signed)
    elif algorithm == "HS256":  # keyed with the public key bytes: the classic confusion attack
        signature = hmac.new(IDP.public_key_der, signed, hashlib.sha256).digest()
    else:
        signature = b""
    return (signed + b"." + b64(signature)).decode()


@fuzz_settings()
@given(claims=_claims(), algorithm=st.sampled_from(["EdDSA", "HS256", "none"]))
def test_fuzz_registered_idp_signs_arbitrary_claims(claims: dict, algorithm: str) -> None:
    result = _verify(_signed(claims, algorithm))
    if algorithm != "EdDSA":
        assert isinstance(result, TokenError), "a token not signed with the registered key passed"
        return
    if isinstance(result, Exception):
        assert isinstance(result, TokenError)
        return
    # Accepted: then the claims obey every rule, whatever the JSON held.
    assert claims["iss"] == IDP.issuer
    assert claims["aud"] == "cdx-portal" or "cdx-portal" in claims["aud"]
    assert claims["exp"] - claims["iat"] <= tokens.MAX_LIFETIME.total_seconds()
    assert NOW.timestamp() < claims["exp"] + tokens.LEEWAY.total_seconds()
    assert result.role in tokens.ROLES


# --- regressions found by the fuzz tests above --------------------------------------------------


def _base_claims() -> dict[str, object]:
    return {
        "iss": IDP.issuer,
        "sub": "001099012345",
        "aud": "cdx-portal",
        "iat": _now,
        "exp": _now + 60,
    }


def test_nan_issued_at_cannot_stretch_a_token_lifetime() -> None:
    claims = _base_claims() | {"iat": float("nan"), "exp": _now + 10 * 365 * 86400}
    expect_error(TokenError, _verify_raising, _signed(claims))


def test_nan_or_infinite_expiry_is_refused_not_a_crash() -> None:
    for exp in (float("nan"), float("inf"), float("-inf")):
        expect_error(TokenError, _verify_raising, _signed(_base_claims() | {"exp": exp}))


def test_huge_expiry_is_refused_not_a_crash() -> None:
    claims = _base_claims() | {"iat": 1e300, "exp": 1e300}
    expect_error(TokenError, _verify_raising, _signed(claims))


def _verify_raising(token: str) -> tokens.TokenClaims:
    return tokens.verify_token(
        token, [IDP], audience="cdx-portal", now=NOW, production=False, instance="VN"
    )
