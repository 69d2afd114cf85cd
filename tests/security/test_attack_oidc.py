"""Attacks on logging in: a hostile (or impersonated) OpenID provider on loopback answers the
portal's real relying party with forged, expired, wrong-audience, wrong-nonce, unsigned and
unknown-key ID tokens; each is refused with its own message and no session. Made-up key ids
cannot turn CDX into a load generator against the provider, and an unregistered issuer named in
a token is never contacted."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cdx import crypto, db, errors
from cdx.clock import utcnow
from cdx.globalconf import IdentityProviderInfo
from cdx.jwks import ProviderCache, TokenVerifier
from cdx.webserver import RunningWebServer, serve
from portal.app import create_app
from portal.identity import OidcIdentity
from portal.sessions import SqlSessionStore
from tests.unit.portal_fakes import FakeConfSource, Harness, World, harness

CLIENT = "cdx-portal"
CITIZEN = "079090000001"


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class HostileProvider:
    """Discovery and JWKS like a real provider; its token endpoint answers whatever ID token
    ``answer(nonce)`` builds. Counts every request per path."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    answer: Any = None
    hits: dict[str, int] = field(default_factory=dict)
    issuer: str = ""
    nonces: list[str] = field(default_factory=list)

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid="good", use="sig", alg="ES256")
        return jwk

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            self._hit("discovery")
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                }
            )

        async def jwks(request: Request) -> Response:
            self._hit("jwks")
            return JSONResponse({"keys": [self.jwk()]})

        async def token(request: Request) -> Response:
            self._hit("token")
            form = await request.form()
            assert form.get("code_verifier"), "the portal sent no PKCE verifier"
            return JSONResponse(
                {"access_token": "x", "token_type": "Bearer", "id_token": self.answer(self)}
            )

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/token", token, methods=["POST"]),
            ]
        )

    def _hit(self, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(utcnow().timestamp())
        out = {
            "iss": self.issuer,
            "sub": CITIZEN,
            "aud": CLIENT,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonces[-1] if self.nonces else "",
        }
        out.update(overrides)
        return out

    def signed(self, claims: dict[str, Any], *, key: Any = None, kid: str = "good") -> str:
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": kid})


@dataclass
class Stage:
    provider: HostileProvider
    web: RunningWebServer
    h: Harness
    portal_url: str
    world: World


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    provider = HostileProvider()
    web = serve(provider.app(), "127.0.0.1:0", name="hostile-idp")
    provider.issuer = web.url
    h = harness(secure_cookies=False)
    h.world.resign(
        identity_providers=[IdentityProviderInfo(web.url, b"", False, CLIENT, ("ES256",))]
    )
    sessions = SqlSessionStore.open(db.sqlite_url(tmp_path / "portal.db"))
    idp = OidcIdentity(FakeConfSource(h.world.conf), TokenVerifier(ProviderCache()))
    app = create_app(
        h.config, h.consent, h.audit, idp, FakeConfSource(h.world.conf), sessions=sessions
    )
    portal = serve(app, "127.0.0.1:0", name="cdx-portal")
    try:
        yield Stage(provider, web, h, portal.url, h.world)
    finally:
        portal.stop()
        web.stop()
        sessions.close()


def attempt(stage: Stage) -> httpx2.Response:
    """Start a login at the portal, and come back with a code as the provider would."""
    with httpx2.Client(base_url=stage.portal_url, follow_redirects=False, timeout=10) as browser:
        start = browser.get("/login/start", params={"issuer": stage.provider.issuer})
        assert start.status_code == 303, start.text
        query = parse_qs(urlsplit(start.headers["location"]).query)
        stage.provider.nonces.append(query["nonce"][0])
        back = browser.get(
            "/auth/callback",
            params={"code": secrets.token_urlsafe(8), "state": query["state"][0]},
        )
        home = browser.get("/")
        back.extensions["home"] = home.headers.get("location")
        return back


def _forged(p: HostileProvider) -> str:
    return p.signed(p.claims(), key=ec.generate_private_key(ec.SECP256R1()))


def _expired(p: HostileProvider) -> str:
    now = int(utcnow().timestamp())
    return p.signed(p.claims(iat=now - 7200, exp=now - 3600))


def _wrong_audience(p: HostileProvider) -> str:
    return p.signed(p.claims(aud="another-relying-party"))


def _wrong_nonce(p: HostileProvider) -> str:
    return p.signed(p.claims(nonce="nonce-of-another-login"))


def _alg_none(p: HostileProvider) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(p.claims()).encode())}."


def _hs256_with_public_key(p: HostileProvider) -> str:
    public = crypto.public_key_to_der(p.key.public_key())
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "kid": "good"}).encode())
    body = b64(json.dumps(p.claims()).encode())
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


def _unknown_key(p: HostileProvider) -> str:
    return p.signed(p.claims(), key=ec.generate_private_key(ec.SECP256R1()), kid="rotated")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_forged, "its signature is not valid"),
        (_expired, "has expired"),
        (_wrong_audience, "meant for another service"),
        (_wrong_nonce, "does not belong to this login"),
        (_alg_none, "signing method this service does not accept"),
        (_hs256_with_public_key, "signing method this service does not accept"),
        (_unknown_key, "a key it does not publish"),
    ],
    ids=["forged", "expired", "wrong-audience", "wrong-nonce", "alg-none", "hs256", "unknown-kid"],
)
def test_bad_id_tokens_are_refused_each_with_its_own_message(
    stage: Stage, make: Any, message: str
) -> None:
    stage.provider.answer = make
    response = attempt(stage)
    assert response.status_code == 400 and message in response.text
    assert "Traceback" not in response.text
    assert response.extensions["home"] == "/login"  # no session was made


def test_a_valid_id_token_logs_in(stage: Stage) -> None:
    """The control case: the same stage with an honest token logs the citizen in."""
    stage.provider.answer = lambda p: p.signed(p.claims())
    response = attempt(stage)
    assert response.status_code == 303 and response.headers["location"] == "/me/access"
    assert response.extensions["home"] == "/me/access"


def test_made_up_key_ids_refetch_the_jwks_at_most_once(stage: Stage) -> None:
    """Tokens naming random key ids must not make CDX hammer the provider."""
    verifier = TokenVerifier(ProviderCache(min_refresh=3600))
    p = stage.provider
    other = ec.generate_private_key(ec.SECP256R1())
    for _ in range(40):
        token = p.signed(p.claims(nonce=None), key=other, kid=secrets.token_hex(8))
        with pytest.raises(errors.TokenKeyUnknownError):
            verifier.verify(token, stage.world.conf, now=utcnow())
    assert p.hits.get("jwks", 0) <= 2  # the first fetch, and one refetch


def test_an_unregistered_issuer_named_in_a_token_is_never_contacted(stage: Stage) -> None:
    """A token's unverified ``iss`` must not make a service fetch an attacker's URL (SSRF)."""
    verifier = TokenVerifier(ProviderCache())
    p = stage.provider
    token = p.signed(p.claims(iss=f"{p.issuer}/elsewhere"))
    with pytest.raises(errors.TokenError, match="not a registered identity provider"):
        verifier.verify(token, stage.world.conf, now=utcnow())
    assert p.hits == {}
