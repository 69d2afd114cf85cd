"""The development identity provider over HTTP: the portal's relying party logs in through it
(discovery, JWKS, login page, token endpoint with PKCE); it never redirects to an unregistered
address, a code works once and only with its verifier, and it is refused in production."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import errors
from cdx.clock import utcnow
from cdx.jwks import TokenVerifier
from cdx.webserver import RunningWebServer
from consent.idp import DevIdentityProvider, dev_issuer
from consent.idp_server import DevOpenIdProvider, portal_client, serve_dev_provider
from portal.backends import LoginRequest
from portal.identity import OidcIdentity
from tests.unit.portal_fakes import FakeConfSource, World

PORTAL = "https://portal.test"
CALLBACK = f"{PORTAL}/auth/callback"
CITIZEN = "079090000001"


@dataclass
class Dev:
    provider: DevOpenIdProvider
    web: RunningWebServer
    world: World
    source: FakeConfSource
    rp: OidcIdentity


@pytest.fixture
def dev() -> Iterator[Dev]:
    world = World()
    source = FakeConfSource(world.conf)
    idp = DevIdentityProvider(dev_issuer("VN"), "VN", ed25519.Ed25519PrivateKey.generate())
    provider, web = serve_dev_provider(idp, source.current, [portal_client(PORTAL)])
    source.conf = world.resign(identity_providers=[provider.registration()])
    try:
        yield Dev(provider, web, world, source, OidcIdentity(source, TokenVerifier()))
    finally:
        web.stop()


def choose(pending: LoginRequest, subject: str, role: str = "citizen") -> str:
    """The login page: choose who you are; returns the code sent back to the portal."""
    with httpx2.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(pending.url)
        assert page.status_code == 200 and "Development identity provider" in page.text
        ticket = page.text.split('name="ticket" value="', 1)[1].split('"', 1)[0]
        action = pending.url.split("?", 1)[0]
        back = browser.post(action, data={"ticket": ticket, "role": role, "subject": subject})
        assert back.status_code == 303, back.text
        location = back.headers["location"]
        assert location.startswith(CALLBACK)
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == [pending.state]
        return query["code"][0]


def test_the_portal_logs_in_through_the_development_provider(dev: Dev) -> None:
    pending = dev.rp.begin(dev.provider.issuer, CALLBACK)
    code = choose(pending, CITIZEN)
    login = dev.rp.complete(
        pending, code=code, returned_issuer=dev.provider.issuer, redirect_uri=CALLBACK, now=utcnow()
    )
    assert (login.principal.subject, login.principal.role) == (CITIZEN, "citizen")
    pending = dev.rp.begin(dev.provider.issuer, CALLBACK)
    code = choose(pending, "dpa-inspector-1", "inspector")
    login = dev.rp.complete(
        pending, code=code, returned_issuer=dev.provider.issuer, redirect_uri=CALLBACK, now=utcnow()
    )
    assert login.principal.role == "inspector"


def test_a_code_works_once_and_only_with_its_verifier(dev: Dev) -> None:
    pending = dev.rp.begin(dev.provider.issuer, CALLBACK)
    code = choose(pending, CITIZEN)
    stolen = LoginRequest("", pending.issuer, pending.state, pending.nonce, "x" * 64)
    with pytest.raises(errors.LoginFailedError):  # an intercepted code without the verifier
        dev.rp.complete(
            stolen, code=code, returned_issuer=None, redirect_uri=CALLBACK, now=utcnow()
        )
    with pytest.raises(errors.LoginFailedError):  # and it was used up by that attempt
        dev.rp.complete(
            pending, code=code, returned_issuer=None, redirect_uri=CALLBACK, now=utcnow()
        )


def test_unregistered_redirect_addresses_are_never_used(dev: Dev) -> None:
    pending = dev.rp.begin(dev.provider.issuer, "https://evil.example/auth/callback")
    response = httpx2.get(pending.url, follow_redirects=False)
    assert response.status_code == 400 and "location" not in response.headers


def test_refused_in_production(dev: Dev) -> None:
    pending = dev.rp.begin(dev.provider.issuer, CALLBACK)
    dev.source.conf = dev.world.resign(production=True)
    response = httpx2.get(pending.url, follow_redirects=False)
    assert response.status_code == 403 and "production" in response.text
