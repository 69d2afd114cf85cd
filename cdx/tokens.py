"""Verifies citizen and inspector tokens (OpenID Connect ID tokens) and, for the development
identity provider, issues them; pure, no I/O.

Tokens are JWTs (RFC 7519) signed by an identity provider the registry anchors in global
configuration (DESIGN §7). Two kinds of anchor (``IdentityProviderInfo``):

- **OpenID Connect** (the normal case): the issuer URL, the portal's client id (``audience``),
  the pinned algorithms and claim mappings; the keys come from the provider's JWKS, fetched and
  cached by ``cdx.jwks`` and passed in here as ``key_sets`` (issuer -> ``KeySet``);
- **static key** (offline tests only): one fixed key; its type decides the algorithm.

Verification rules (OIDC Core §3.1.3.7, DESIGN §5):

- the token names its issuer; only a registered issuer is considered, and a development one is
  refused in production (so is a static-key one);
- ``alg`` must be one the issuer is registered with, never ``none`` and never taken from the
  token alone; the key is chosen by ``kid`` among the issuer's published keys
  (``TokenKeyUnknownError`` when it is not there: the caller may refetch the JWKS once);
- ``iss`` equals the registered issuer; ``aud`` holds the portal's client id (or the CLI's);
  with several audiences ``azp`` names the client; ``exp``, ``iat`` (and ``nbf``) are checked
  against the ``now`` parameter with a small leeway, and a token may not live longer than
  ``MAX_LIFETIME``; at login the ``nonce`` must be the one the portal sent;
- the claim mappings say which claim is the national id and which claim/value makes an
  inspector; a citizen's national id must parse for the instance.

Every failure raises ``TokenError`` or one of its subclasses, each with its own code and a
message that never contains the token or the subject.
"""

from __future__ import annotations

import hmac
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cdx import crypto, errors
from cdx.globalconf import IdentityProviderInfo
from cdx.ids import CitizenId

Role = Literal["citizen", "inspector"]
ROLES: tuple[Role, ...] = ("citizen", "inspector")

MAX_TOKEN_BYTES = 8 * 1024
MAX_LIFETIME = timedelta(hours=24)
LEEWAY = timedelta(seconds=60)
#: The JWS algorithms an identity provider may be registered with (RFC 7518, RFC 8037).
#: Symmetric (HS*) algorithms are excluded: relying parties other than the portal could not
#: verify them, and a shared secret is no anchor.
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_NATIONAL_ID_CLAIM = "sub"
DEFAULT_INSPECTOR_CLAIM = "role"
DEFAULT_INSPECTOR_VALUE = "inspector"
_MAX_NAME_CHARS = 200
_MAX_SUB_CHARS = 200
_KEY_TYPES: dict[str, type] = {
    "RS": rsa.RSAPublicKey,
    "PS": rsa.RSAPublicKey,
    "ES": ec.EllipticCurvePublicKey,
    "Ed": ed25519.Ed25519PublicKey,
}
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


@dataclass(frozen=True)
class TokenClaims:
    """The verified identity behind a token.

    ``subject`` is the citizen for ``role == "citizen"`` and ``None`` for inspectors, whose
    ``sub`` is kept as ``principal``. ``acting_for`` is the person whose data the user acts on
    when that is someone else (a guardian for a child): identity providers do not assert
    representation, so verification leaves it ``None`` ("themselves"); whom a user represents
    is the consent service's to say (``cdx.representation``, docs/adr/0018).
    ``name`` is personal data: it is left out of the repr.
    """

    subject: CitizenId | None
    role: Role
    name: str = field(repr=False)
    issuer: str
    principal: str = field(default="", repr=False)
    expires_at: datetime | None = None
    acting_for: CitizenId | None = field(default=None, repr=False)

    @property
    def data_subject(self) -> CitizenId | None:
        """Whose data this user sees and decides on: themselves unless acting for someone."""
        return self.acting_for or self.subject


@dataclass(frozen=True)
class SigningKey:
    """One public key an identity provider publishes in its JWKS."""

    key_id: str
    public_key: crypto.PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False)
    algorithm: str = ""  # the JWK's "alg", when it names one


@dataclass(frozen=True)
class KeySet:
    """The signing keys an identity provider published (parsed with ``parse_jwks``)."""

    keys: tuple[SigningKey, ...]

    def candidates(self, key_id: str | None) -> list[SigningKey]:
        """Keys a token with header ``kid`` may be verified with."""
        if key_id is None:
            return list(self.keys)
        return [k for k in self.keys if k.key_id == key_id]


MAX_JWKS_KEYS = 32


def parse_jwks(document: Any) -> KeySet:
    """Parse a JWK Set (RFC 7517 §5) into the public signing keys it holds.

    Keys for encryption (``use: enc``), of unsupported types, or carrying private parts are
    left out; so is a key whose ``kid`` repeats another's.

    Raises:
        MalformedError: not a JWK Set, too many keys, or no usable signing key.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise errors.MalformedError("the identity provider's JWKS is not a JWK Set")
    entries = document["keys"]
    if len(entries) > MAX_JWKS_KEYS:
        raise errors.MalformedError("the identity provider's JWKS holds too many keys")
    keys: list[SigningKey] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if any(part in entry for part in ("d", "p", "q", "k")):
            continue  # private or symmetric material never belongs in a published JWKS
        kid = entry.get("kid", "")
        if not isinstance(kid, str) or kid in seen:
            continue
        try:
            public = jwt.PyJWK(entry).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        if not isinstance(
            public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
        ):
            continue
        alg = entry.get("alg", "")
        seen.add(kid)
        keys.append(SigningKey(kid, public, alg if isinstance(alg, str) else ""))
    if not keys:
        raise errors.MalformedError("the identity provider's JWKS holds no usable signing key")
    return KeySet(tuple(keys))


def citizen_audience(instance: str) -> str:
    """The audience CDX relying parties expect in static-key tokens, unless the identity
    provider is registered with an audience (its OIDC client id) of its own."""
    return f"urn:cdx:{instance}"


def algorithm_for(public_key: crypto.PublicKey) -> str:
    """The one JWS algorithm a static key may verify.

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


@dataclass(frozen=True)
class UnverifiedToken:
    """What a token says about itself before any check: only for choosing keys."""

    issuer: str
    algorithm: str
    key_id: str | None


def read_unverified(token: str) -> UnverifiedToken:
    """The issuer, algorithm and key id a token claims (nothing is verified).

    Raises:
        TokenError: missing, too large or not a well-formed JWT, or no issuer.
        TokenAlgorithmError: an unsigned token (``alg: none``).
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
        raise errors.TokenError("the token is missing or too large")
    try:
        header = jwt.get_unverified_header(token)
        hint = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise errors.TokenError("the token is not a well-formed JWT") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg or alg.lower() == "none":
        raise errors.TokenAlgorithmError("unsigned tokens (alg=none) are refused")
    issuer = hint.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise errors.TokenError("the token names no issuer")
    kid = header.get("kid")
    return UnverifiedToken(issuer, alg, kid if isinstance(kid, str) else None)


def providers_for(
    identity_providers: Iterable[IdentityProviderInfo], issuer: str, *, production: bool
) -> list[IdentityProviderInfo]:
    """The registered providers of ``issuer`` this instance may trust.

    Raises:
        TokenError: the issuer is not registered, or only as a development or static-key
            provider while the instance is in production.
    """
    found = [p for p in identity_providers if p.issuer == issuer]
    if not found:
        raise errors.TokenError("the token's issuer is not a registered identity provider")
    if production:
        found = [p for p in found if not p.development]
        if not found:
            raise errors.TokenError("development identity providers are refused in production")
        found = [p for p in found if not p.static_key]
        if not found:
            raise errors.TokenError("static-key identity providers are refused in production")
    return found


_NO_CLAIM_CHECKS: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


def _signature(token: str, key: Any, algorithm: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key=key, algorithms=[algorithm], options=_NO_CLAIM_CHECKS
        )
    except jwt.PyJWTError:
        return None
    return claims


def _key_fits(key: SigningKey, algorithm: str) -> bool:
    """The key's type (and curve) is the one ``algorithm`` needs (RFC 7518 §3.1)."""
    wanted = _KEY_TYPES.get(algorithm[:2])
    if wanted is None or not isinstance(key.public_key, wanted):
        return False
    if key.algorithm and key.algorithm != algorithm:
        return False
    curve = _CURVES.get(algorithm)
    return curve is None or key.public_key.curve.name == curve  # type: ignore[union-attr]


def _verify_static(
    token: str, hint: UnverifiedToken, providers: Sequence[IdentityProviderInfo]
) -> tuple[dict[str, Any], IdentityProviderInfo]:
    refused_algorithm = False
    for provider in providers:
        try:
            key = crypto.public_key_from_der(provider.public_key_der)
            algorithm = algorithm_for(key)
        except errors.CdxError:
            continue  # a registered key we cannot use never verifies anything
        if hint.algorithm != algorithm:
            refused_algorithm = True
            continue
        claims = _signature(token, key, algorithm)
        if claims is not None:
            return claims, provider
    if refused_algorithm and not any(_static_algorithm(p) == hint.algorithm for p in providers):
        raise errors.TokenAlgorithmError(
            "the token's algorithm is not the identity provider's registered one"
        )
    raise errors.TokenSignatureError("the token's signature does not verify")


def _static_algorithm(provider: IdentityProviderInfo) -> str:
    try:
        return algorithm_for(crypto.public_key_from_der(provider.public_key_der))
    except errors.CdxError:
        return ""


def _verify_jwks(
    token: str, hint: UnverifiedToken, provider: IdentityProviderInfo, key_set: KeySet | None
) -> dict[str, Any]:
    allowed = [a for a in provider.algorithms if a in ALGORITHMS]
    if hint.algorithm not in allowed:
        raise errors.TokenAlgorithmError(
            "the token's algorithm is not one the identity provider is registered with"
        )
    if key_set is None:
        raise errors.TokenKeyUnknownError("the identity provider's keys are not known yet")
    candidates = [k for k in key_set.candidates(hint.key_id) if _key_fits(k, hint.algorithm)]
    if not candidates:
        raise errors.TokenKeyUnknownError()
    for key in candidates:
        claims = _signature(token, key.public_key, hint.algorithm)
        if claims is not None:
            return claims
    raise errors.TokenSignatureError("the token's signature does not verify")


def verify_token(
    token: str,
    identity_providers: Iterable[IdentityProviderInfo],
    *,
    now: datetime,
    production: bool,
    audience: str = "",
    instance: str | None = None,
    key_sets: Mapping[str, KeySet] | None = None,
    client_id: str | None = None,
    nonce: str | None = None,
) -> TokenClaims:
    """Verify ``token`` against the registered identity providers at time ``now``.

    ``key_sets`` maps an OIDC issuer to the keys its JWKS published (``cdx.jwks`` fetches
    them). ``audience`` is what static-key providers without a registered audience must name.
    ``client_id`` (the portal, at login) requires the token to be for exactly that client; else
    any client registered for the provider (the portal's or the CLI's) will do. ``nonce`` (at
    login) must match the token's. ``instance`` (e.g. ``"VN"``) selects the national-id format.

    Raises:
        TokenError: malformed, unknown or refused issuer, missing or invalid claims, issued in
            the future, too long-lived, no national id.
        TokenAlgorithmError: ``alg: none`` or an algorithm the provider is not registered with.
        TokenKeyUnknownError: the ``kid`` is not among the provider's published keys.
        TokenSignatureError: the signature does not verify (a forged or altered token).
        TokenExpiredError: ``exp`` has passed.
        TokenAudienceError: the token is not for this relying party.
        TokenNonceError: the nonce differs from the expected one.
    """
    hint = read_unverified(token)
    providers = providers_for(identity_providers, hint.issuer, production=production)
    static = [p for p in providers if p.static_key]
    if static:
        claims, chosen = _verify_static(token, hint, static)
    else:
        chosen = providers[0]  # issuers are unique among OIDC providers (the registry checks)
        claims = _verify_jwks(token, hint, chosen, (key_sets or {}).get(chosen.issuer))
    return _check_claims(
        claims,
        chosen,
        audience=audience,
        now=now,
        instance=instance,
        client_id=client_id,
        nonce=nonce,
    )


def _check_audience(
    claims: dict[str, Any], provider: IdentityProviderInfo, audience: str, client_id: str | None
) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id is not None:
        accepted = {client_id}
    elif provider.static_key:
        accepted = {provider.audience or audience}
    else:
        accepted = {provider.audience, provider.cli_client_id}
    accepted.discard("")
    matching = [a for a in audiences if isinstance(a, str) and a in accepted]
    if not matching:
        raise errors.TokenAudienceError()
    # OIDC Core §3.1.3.7 steps 4-5: with several audiences, azp names the client it was for.
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp not in accepted:
        raise errors.TokenAudienceError("the token was issued to another client")


def _is_inspector(claims: dict[str, Any], provider: IdentityProviderInfo) -> bool:
    name = provider.inspector_claim or DEFAULT_INSPECTOR_CLAIM
    wanted = provider.inspector_value or DEFAULT_INSPECTOR_VALUE
    value = claims.get(name)
    if name == DEFAULT_INSPECTOR_CLAIM and value is not None and value not in ROLES:
        raise errors.TokenError("the token's role is not recognised")
    if isinstance(value, list):
        return wanted in value
    return value == wanted


def _check_claims(
    claims: dict[str, Any],
    provider: IdentityProviderInfo,
    *,
    audience: str,
    now: datetime,
    instance: str | None,
    client_id: str | None,
    nonce: str | None,
) -> TokenClaims:
    if claims.get("iss") != provider.issuer:
        raise errors.TokenError("the token's issuer does not match its key")
    _check_audience(claims, provider, audience, client_id)
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
    if nonce is not None:
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise errors.TokenNonceError()
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > _MAX_SUB_CHARS:
        raise errors.TokenError("the token has no valid subject")
    name = claims.get("name", "")
    if not isinstance(name, str) or len(name) > _MAX_NAME_CHARS:
        raise errors.TokenError("the token's name claim is invalid")
    expires_at = datetime.fromtimestamp(exp, tz=now.tzinfo)
    if _is_inspector(claims, provider):
        return TokenClaims(None, "inspector", name, provider.issuer, sub, expires_at)
    national_id = claims.get(provider.national_id_claim or DEFAULT_NATIONAL_ID_CLAIM)
    if not isinstance(national_id, str) or not national_id:
        raise errors.TokenError("the token carries no national id")
    try:
        subject = CitizenId.parse(national_id, instance) if instance else CitizenId(national_id)
    except errors.InvalidCitizenIdError as exc:
        raise errors.TokenError("the token's subject is not a national id") from exc
    return TokenClaims(subject, "citizen", name, provider.issuer, sub, expires_at)


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
    nonce: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Mint a token (the development identity provider; production uses an OIDC issuer).

    ``nonce`` and ``extra`` claims serve the development provider's OIDC endpoints.

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
    claims: dict[str, Any] = dict(extra or {})
    claims.update(
        {
            "iss": issuer,
            "sub": sub,
            "aud": audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + int(ttl.total_seconds()),
            "role": role,
            "jti": uuid.uuid4().hex,
        }
    )
    if name:
        claims["name"] = name
    if nonce is not None:
        claims["nonce"] = nonce
    return jwt.encode(
        claims,
        private_key,
        algorithm=algorithm,
        headers={"kid": crypto.key_id(public), "typ": "JWT"},
    )


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_provider_url(url: str, *, production: bool, what: str = "issuer") -> None:
    """An identity provider URL CDX may contact: ``https``, or ``http`` on loopback outside
    production (a development or test provider on the same machine). No credentials, query or
    fragment (OIDC Discovery §2: the issuer is a plain https URL).

    Raises:
        InvalidArgumentError: any other URL.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise errors.InvalidArgumentError(f"the identity provider {what} is not a URL") from exc
    if parts.username or parts.password or parts.query or parts.fragment or not host:
        raise errors.InvalidArgumentError(
            f"the identity provider {what} must be a plain URL (no credentials, query or fragment)"
        )
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and host in _LOOPBACK_HOSTS and not production:
        return
    raise errors.InvalidArgumentError(
        f"the identity provider {what} must use https (http only on loopback, outside production)"
    )
