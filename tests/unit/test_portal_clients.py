"""The portal's adapters: the OpenID relying party (with the provider's HTTP faked in memory)
and the protobuf mapping of the gRPC clients (leaf bytes must survive it exactly, or no proof would ever verify)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import errors, merkle
from cdx.globalconf import IdentityProviderInfo
from cdx.jwks import ProviderCache, TokenVerifier
from cdx.v1 import audit_pb2, consent_pb2
from portal import backends as b
from portal.grpc_clients import consent_from_pb, entry_from_pb
from portal.identity import OidcIdentity
from tests.unit.portal_fakes import ALICE, NOW, FakeConfSource, World


@pytest.fixture
def world() -> World:
    return World()


ISSUER = "https://id.example.gov.vn"
CLIENT = "cdx-portal"
IDP_KEY = ed25519.Ed25519PrivateKey.generate()


def oidc(*, development: bool = False) -> IdentityProviderInfo:
    return IdentityProviderInfo(ISSUER, b"", development, CLIENT, ("EdDSA",))


def published(issuer: str = ISSUER) -> dict[str, bytes]:
    """What the provider serves: discovery and JWKS (fetched through ``ProviderCache``)."""
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(IDP_KEY.public_key(), as_dict=True)
    jwk["kid"] = "k1"
    discovery = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "end_session_endpoint": f"{issuer}/logout",
    }
    return {
        f"{issuer}/.well-known/openid-configuration": json.dumps(discovery).encode(),
        f"{issuer}/jwks": json.dumps({"keys": [jwk]}).encode(),
    }


class TokenEndpoint:
    """The provider's token endpoint in memory: answers the code with an ID token."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.nonce = ""
        self.claims: dict[str, Any] = {}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.requests.append(form)
        iat = int(NOW.timestamp())
        claims = {
            "iss": ISSUER,
            "sub": ALICE,
            "aud": CLIENT,
            "iat": iat,
            "exp": iat + 600,
            "nonce": self.nonce,
            **self.claims,
        }
        token = jwt.encode(claims, IDP_KEY, algorithm="EdDSA", headers={"kid": "k1"})
        return httpx2.Response(
            200, json={"access_token": "a", "token_type": "Bearer", "id_token": token}
        )


def relying_party(world: World, endpoint: TokenEndpoint, **kw: Any) -> OidcIdentity:
    world.resign(identity_providers=[oidc(**kw)])
    documents = published()

    def fetch(url: str) -> bytes:
        return documents[url]

    return OidcIdentity(
        FakeConfSource(world.conf),
        TokenVerifier(ProviderCache(fetch=fetch)),
        transport=lambda: httpx2.MockTransport(endpoint),
    )


def log_in(idp: OidcIdentity, endpoint: TokenEndpoint) -> b.Login:
    pending = idp.begin(ISSUER, "https://portal.test/auth/callback")
    query = parse_qs(urlsplit(pending.url).query)
    endpoint.nonce = endpoint.nonce or query["nonce"][0]
    return idp.complete(
        pending,
        code="the-code",
        returned_issuer=ISSUER,
        redirect_uri="https://portal.test/auth/callback",
        now=NOW,
    )


def test_authorization_request_carries_pkce_state_and_nonce(world: World) -> None:
    idp = relying_party(world, TokenEndpoint())
    pending = idp.begin(ISSUER, "https://portal.test/auth/callback")
    query = parse_qs(urlsplit(pending.url).query)
    assert pending.url.startswith(f"{ISSUER}/authorize?")
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT]
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [create_s256_code_challenge(pending.code_verifier)]
    assert query["state"] == [pending.state] and query["nonce"] == [pending.nonce]
    assert "openid" in query["scope"][0].split()
    assert pending.state != pending.nonce and len(pending.code_verifier) >= 43


def test_code_exchange_sends_the_verifier_and_checks_the_id_token(world: World) -> None:
    endpoint = TokenEndpoint()
    login = log_in(relying_party(world, endpoint), endpoint)
    assert (login.principal.subject, login.principal.role) == (ALICE, "citizen")
    assert login.principal.acting_for is None and login.principal.data_subject == ALICE
    [sent] = endpoint.requests
    assert sent["grant_type"] == "authorization_code" and sent["code"] == "the-code"
    assert len(sent["code_verifier"]) >= 43


def test_id_token_with_another_nonce_is_refused(world: World) -> None:
    endpoint = TokenEndpoint()
    endpoint.nonce = "a-nonce-from-another-login"
    with pytest.raises(errors.TokenNonceError):
        log_in(relying_party(world, endpoint), endpoint)


def test_answer_from_another_issuer_is_refused(world: World) -> None:
    """RFC 9207 mix-up defence: the ``iss`` on the callback must be the provider asked."""
    endpoint = TokenEndpoint()
    idp = relying_party(world, endpoint)
    pending = idp.begin(ISSUER, "https://portal.test/auth/callback")
    with pytest.raises(errors.LoginFailedError):
        idp.complete(
            pending,
            code="c",
            returned_issuer="https://evil.example",
            redirect_uri="https://portal.test/auth/callback",
            now=NOW,
        )
    assert endpoint.requests == []


def test_development_provider_is_not_offered_in_production(world: World) -> None:
    idp = relying_party(world, TokenEndpoint(), development=True)
    assert [o.issuer for o in idp.options()] == [ISSUER]
    world.resign(production=True, identity_providers=[oidc(development=True)])
    idp._conf = FakeConfSource(world.conf)  # type: ignore[attr-defined]
    assert idp.options() == []
    with pytest.raises(errors.NotFoundError):
        idp.begin(ISSUER, "https://portal.test/auth/callback")


def test_static_key_providers_are_never_offered_for_login(world: World) -> None:
    idp = relying_party(world, TokenEndpoint())
    world.resign(identity_providers=[oidc(), world.dev_idp.registration()])
    idp._conf = FakeConfSource(world.conf)  # type: ignore[attr-defined]
    assert len(world.conf.identity_providers) == 2
    assert [o.issuer for o in idp.options()] == [ISSUER]


def test_rp_initiated_logout_names_the_token_and_the_return_address(world: World) -> None:
    endpoint = TokenEndpoint()
    idp = relying_party(world, endpoint)
    url = idp.logout_url(ISSUER, "id.token.value", "https://portal.test/logged-out")
    assert url is not None and url.startswith(f"{ISSUER}/logout?")
    query = parse_qs(urlsplit(url).query)
    assert query["id_token_hint"] == ["id.token.value"]
    assert query["post_logout_redirect_uri"] == ["https://portal.test/logged-out"]


def test_leaf_bytes_survive_the_protobuf_mapping(world: World) -> None:
    world.record(ALICE)
    leaf = world.leaves[0].data
    wire = audit_pb2.LogEntry(index=0, record=audit_pb2.SignedAccessRecord.FromString(leaf))
    entry = entry_from_pb(audit_pb2.LogEntry.FromString(wire.SerializeToString()))
    assert entry.leaf_data == leaf
    assert merkle.leaf_hash(entry.leaf_data) == world.tree.leaf_hashes(0, 1)[0]


def test_consent_mapping_drops_the_national_id() -> None:
    msg = consent_pb2.Consent(
        id="c-1",
        state=consent_pb2.PAUSED,
        terms=consent_pb2.ConsentTerms(
            subject=ALICE,
            grantee="VN:GOV:GDT:income",
            purpose="TAX",
            fields=["income"],
            valid_until_ms=1_800_000_000_000,
        ),
    )
    consent = consent_from_pb(msg)
    assert consent.state == "PAUSED" and consent.terms.fields == ("income",)
    assert ALICE not in repr(consent) and ALICE not in repr(consent.terms)
    assert consent.terms.valid_until is not None and consent.terms.valid_from is None
    with pytest.raises(errors.MalformedError):
        consent_from_pb(consent_pb2.Consent(id="c-2"))
