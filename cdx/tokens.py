"""Verifies (and, for the development IdP, issues) citizen and inspector tokens; pure, no I/O.

Tokens are JWTs (RFC 7519) signed by an identity provider registered in global configuration
(DESIGN §7): claims ``iss``, ``sub`` (national id for citizens), ``aud``, ``exp``, ``iat``,
``role`` (``citizen`` or ``inspector``; absent means citizen) and optional ``name``.

Verification rules (DESIGN §5):

- the issuer selects the registered key; the algorithm comes from that key's type (Ed25519 ->
  ``EdDSA``, P-256 -> ``ES256``), never from the token header (a header naming another
  algorithm fails);
- a development identity provider is refused when the instance is in production;
- time checks use the ``now`` parameter (``exp``, ``nbf``, ``iat`` with a small leeway) and a
  token may not live longer than ``MAX_LIFETIME``;
- an IdP registered with an audience (its OIDC client id) is held to it; otherwise the relying
  party's ``audience`` applies.

Every failure raises ``TokenError`` (or ``TokenExpiredError`` / ``TokenAudienceError``) with a
message that never contains the token or the subject.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cdx import crypto, errors
from cdx.globalconf import IdentityProviderInfo
from cdx.ids import CitizenId

Role = Literal["citizen", "inspector"]
ROLES: tuple[Role, ...] = ("citizen", "inspector")

MAX_TOKEN_BYTES = 8 * 1024
MAX_LIFETIME = timedelta(hours=24)
LEEWAY = timedelta(seconds=60)
_MAX_NAME_CHARS = 200
_MAX_SUB_CHARS = 200


@dataclass(frozen=True)
class TokenClaims:
    """The verified identity behind a token.

    ``subject`` is the citizen for ``role == "citizen"`` and ``None`` for inspectors, whose
    ``sub`` is kept as ``principal``. ``name`` is personal data: it is left out of the repr.
    """

    subject: CitizenId | None
    role: Role
    name: str = field(repr=False)
    issuer: str
    principal: str = field(default="", repr=False)
    expires_at: datetime | None = None


def citizen_audience(instance: str) -> str:
    """The audience CDX relying parties (consent service, portal, audit) expect in tokens,
    unless the identity provider is registered with an audience of its own."""
    return f"urn:cdx:{instance}"


def algorithm_for(public_key: crypto.PublicKey) -> str:
    """The one JWS algorithm a registered key may verify.

    Raises:
        UnknownKeyError: the key is neither Ed25519 nor ECDSA P-256.
    """
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return "ES256"
    raise errors.UnknownKeyError("identity provider keys are Ed25519 or ECDSA P-256")


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.TokenError(f"the token's '{name}' claim is not a number")
    # JSON parsers accept NaN, Infinity and integers of any size; a NaN compares false with
    # everything, so it would slip past the lifetime and expiry checks below.
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise errors.TokenError(f"the token's '{name}' claim is not a finite number")
    return number


def _required_numeric(claims: dict[str, Any], name: str) -> float:
    value = _numeric(claims, name)
    if value is None:
        raise errors.TokenError(f"the token has no '{name}' claim")
    return value


def _candidates(
    identity_providers: Iterable[IdentityProviderInfo], issuer: object, *, production: bool
) -> list[IdentityProviderInfo]:
    if not isinstance(issuer, str) or not issuer:
        raise errors.TokenError("the token names no issuer")
    found = [p for p in identity_providers if p.issuer == issuer]
    if not found:
        raise errors.TokenError("the token's issuer is not a registered identity provider")
    if production:
        found = [p for p in found if not p.development]
        if not found:
            raise errors.TokenError("development identity providers are refused in production")
    return found


def verify_token(
    token: str,
    identity_providers: Iterable[IdentityProviderInfo],
    *,
    audience: str,
    now: datetime,
    production: bool,
    instance: str | None = None,
) -> TokenClaims:
    """Verify ``token`` against the registered identity providers at time ``now``.

    ``instance`` (e.g. ``"VN"``) selects the national-id format checked for citizens.

    Raises:
        TokenError: malformed, unknown or refused issuer, bad signature or algorithm, missing
            or invalid claims, issued in the future, too long-lived, unknown role.
        TokenExpiredError: ``exp`` has passed.
        TokenAudienceError: the token is not for this audience.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
        raise errors.TokenError("the token is missing or too large")
    try:
        jwt.get_unverified_header(token)
        hint = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise errors.TokenError("the token is not a well-formed JWT") from exc
    providers = _candidates(identity_providers, hint.get("iss"), production=production)
    claims: dict[str, Any] | None = None
    chosen: IdentityProviderInfo | None = None
    for provider in providers:
        try:
            key = crypto.public_key_from_der(provider.public_key_der)
            algorithm = algorithm_for(key)
        except errors.CdxError:
            continue  # a registered key we cannot use never verifies anything
        try:
            claims = jwt.decode(
                token,
                key=key,  # type: ignore[arg-type]
                algorithms=[algorithm],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.PyJWTError:
            continue
        chosen = provider
        break
    if claims is None or chosen is None:
        raise errors.TokenError("the token's signature does not verify")
    return _check_claims(claims, chosen, audience=audience, now=now, instance=instance)


def _check_claims(
    claims: dict[str, Any],
    provider: IdentityProviderInfo,
    *,
    audience: str,
    now: datetime,
    instance: str | None,
) -> TokenClaims:
    if claims.get("iss") != provider.issuer:
        raise errors.TokenError("the token's issuer does not match its key")
    expected = provider.audience or audience
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not expected or expected not in audiences:
        raise errors.TokenAudienceError()
    at = now.timestamp()
    leeway = LEEWAY.total_seconds()
    exp = _required_numeric(claims, "exp")
    iat = _required_numeric(claims, "iat")
    nbf = _numeric(claims, "nbf")
    if at >= exp + leeway:
        raise errors.TokenExpiredError()
    if iat > at + leeway:
        raise errors.TokenError("the token was issued in the future")
    if nbf is not None and nbf > at + leeway:
        raise errors.TokenError("the token is not valid yet")
    if exp - iat > MAX_LIFETIME.total_seconds():
        raise errors.TokenError("the token lives longer than allowed")
    role = claims.get("role", "citizen")
    if role not in ROLES:
        raise errors.TokenError("the token's role is not recognised")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > _MAX_SUB_CHARS:
        raise errors.TokenError("the token has no valid subject")
    name = claims.get("name", "")
    if not isinstance(name, str) or len(name) > _MAX_NAME_CHARS:
        raise errors.TokenError("the token's name claim is invalid")
    expires_at = datetime.fromtimestamp(exp, tz=now.tzinfo)
    if role == "citizen":
        try:
            subject = CitizenId.parse(sub, instance) if instance else CitizenId(sub)
        except errors.InvalidCitizenIdError as exc:
            raise errors.TokenError("the token's subject is not a national id") from exc
        return TokenClaims(subject, "citizen", name, provider.issuer, expires_at=expires_at)
    return TokenClaims(None, "inspector", name, provider.issuer, sub, expires_at)


def issue_token(
    private_key: crypto.PrivateSigningKey,
    issuer: str,
    subject: str | CitizenId,
    role: Role,
    audience: str,
    now: datetime,
    ttl: timedelta,
    *,
    name: str = "",
) -> str:
    """Mint a token (the development identity provider; production uses an OIDC issuer).

    Raises:
        InvalidArgumentError: unknown role, empty issuer/audience/subject, ``ttl`` not positive
            or longer than ``MAX_LIFETIME``.
        UnknownKeyError: the key is neither Ed25519 nor ECDSA P-256.
    """
    if role not in ROLES:
        raise errors.InvalidArgumentError("role must be 'citizen' or 'inspector'")
    sub = subject.value if isinstance(subject, CitizenId) else subject
    if not issuer or not audience or not sub:
        raise errors.InvalidArgumentError("issuer, audience and subject are required")
    if not timedelta(0) < ttl <= MAX_LIFETIME:
        raise errors.InvalidArgumentError("token lifetime must be positive and at most 24 h")
    public = private_key.public_key()
    algorithm = algorithm_for(public)
    iat = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + int(ttl.total_seconds()),
        "role": role,
        "jti": uuid.uuid4().hex,
    }
    if name:
        claims["name"] = name
    return jwt.encode(
        claims,
        private_key,
        algorithm=algorithm,
        headers={"kid": crypto.key_id(public), "typ": "JWT"},
    )
