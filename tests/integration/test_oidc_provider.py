"""The portal's relying party and the shared token verifier against an independent OpenID
provider (``oidc-provider`` from npm, on loopback): the authorization code flow with PKCE, claim
mappings, a rotated signing key picked up without a restart (one refetch, rate-limited), and the
device authorization grant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from cdx import crypto, errors
from cdx.clock import utcnow
from cdx.devicelogin import DeviceLogin, cli_provider
from cdx.jwks import ProviderCache, TokenVerifier
from portal import backends as b
from portal.identity import OidcIdentity
from tests.oidc_provider.external import (
    INSPECTOR_LOGIN,
    PORTAL_SECRET,
    ExternalProvider,
    code_and_state,
)
from tests.unit.portal_fakes import FakeConfSource, World

PORTAL = "https://portal.test"
CALLBACK = f"{PORTAL}/auth/callback"
CITIZEN = "079090000001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[ExternalProvider]:
    running = ExternalProvider(tmp_path, [PORTAL]).start()
    yield running
    running.stop()


def relying_party(
    provider: ExternalProvider, clock: Clock
) -> tuple[OidcIdentity, TokenVerifier, World]:
    world = World()
    world.resign(identity_providers=[provider.anchor()])
    verifier = TokenVerifier(ProviderCache(clock=clock, min_refresh=30))
    idp = OidcIdentity(
        FakeConfSource(world.conf),
        verifier,
        client_secrets={provider.issuer: crypto.Secret(PORTAL_SECRET)},
        scopes={provider.issuer: "cdx"},
    )
    return idp, verifier, world


def log_in(idp: OidcIdentity, provider: ExternalProvider, login: str) -> b.Login:
    pending = idp.begin(provider.issuer, CALLBACK)
    back = provider.log_in(pending.url, login, CALLBACK)
    code, state = code_and_state(back)
    assert state == pending.state
    return idp.complete(
        pending, code=code, returned_issuer=provider.issuer, redirect_uri=CALLBACK, now=utcnow()
    )


def test_citizen_and_inspector_are_mapped_from_the_providers_claims(
    provider: ExternalProvider,
) -> None:
    idp, _, _ = relying_party(provider, Clock())
    citizen = log_in(idp, provider, CITIZEN)
    assert (citizen.principal.role, citizen.principal.subject) == ("citizen", CITIZEN)
    claims = jwt.decode(citizen.id_token, options={"verify_signature": False})
    assert claims["national_id"] == CITIZEN and claims["aud"] == "cdx-portal"
    inspector = log_in(idp, provider, INSPECTOR_LOGIN)
    assert inspector.principal.role == "inspector"
    assert inspector.principal.subject == INSPECTOR_LOGIN


def test_rotated_signing_key_is_picked_up_without_a_restart(provider: ExternalProvider) -> None:
    clock = Clock()
    idp, verifier, world = relying_party(provider, clock)
    first = log_in(idp, provider, CITIZEN)
    assert jwt.get_unverified_header(first.id_token)["kid"] == "key-1"

    new_kid = provider.rotate()
    clock.now += 31  # past the refetch rate limit
    second = log_in(idp, provider, CITIZEN)
    assert jwt.get_unverified_header(second.id_token)["kid"] == new_kid
    # The services, holding the same verifier, accept the new token too.
    assert verifier.verify(second.id_token, world.conf, now=utcnow()).subject is not None


def test_unknown_key_refetch_is_rate_limited(provider: ExternalProvider) -> None:
    """A rotation seconds after the last fetch waits for the rate limit: until then the new
    key is refused (distinctly), after it the token verifies, with no restart."""
    clock = Clock()
    idp, _, _ = relying_party(provider, clock)
    log_in(idp, provider, CITIZEN)
    provider.rotate()
    clock.now += 5
    with pytest.raises(errors.TokenKeyUnknownError):
        log_in(idp, provider, CITIZEN)
    clock.now += 30
    assert log_in(idp, provider, CITIZEN).principal.subject == CITIZEN


def test_device_authorization_grant_gives_the_cli_a_token(provider: ExternalProvider) -> None:
    clock = Clock()
    _, verifier, world = relying_party(provider, clock)
    device = DeviceLogin(
        world.conf, cli_provider(world.conf), verifier, scope="cdx", sleep=lambda _s: None
    )
    authorization = device.start()
    assert authorization.user_code and authorization.verification_uri.startswith(provider.issuer)
    provider.approve_device(authorization.verification_uri_complete, CITIZEN)
    token, claims = device.wait(authorization, now=utcnow)
    assert claims.role == "citizen" and claims.subject is not None
    assert claims.subject.value == CITIZEN
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "cdx-cli"
    # a CLI token is not a portal login
    with pytest.raises(errors.TokenAudienceError):
        verifier.verify(token, world.conf, now=utcnow(), client_id="cdx-portal")
