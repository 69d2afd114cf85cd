"""The registry anchors identity providers by issuer URL (OpenID Connect) with a client id,
pinned algorithms and claim mappings; static keys and development providers are for
non-production instances only, and issuer URLs must be https there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import crypto, errors
from cdx.clock import utcnow
from cdx.globalconf import IdentityProviderInfo
from registry.bootstrap import init_instance, open_registry
from registry.service import RegistryService

ACTOR = "admin:bootstrap"
ISSUER = "https://id.example.gov.vn"


@pytest.fixture
def registry(tmp_path: Path) -> RegistryService:
    init_instance(tmp_path, "VN", utcnow())
    return open_registry(tmp_path)


def oidc(**kw: Any) -> IdentityProviderInfo:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "public_key_der": b"",
        "development": False,
        "audience": "cdx-portal",
        "algorithms": ("RS256",),
        "national_id_claim": "national_id",
        "inspector_claim": "groups",
        "inspector_value": "dpa-inspectors",
        "cli_client_id": "cdx-cli",
    }
    args.update(kw)
    return IdentityProviderInfo(**args)


def test_an_oidc_provider_is_anchored_with_its_mappings(registry: RegistryService) -> None:
    anchors = registry.set_trust_anchors(identity_providers=[oidc()], production=True, actor=ACTOR)
    [p] = anchors.identity_providers
    assert (p.issuer, p.audience, list(p.algorithms)) == (ISSUER, "cdx-portal", ["RS256"])
    assert (p.national_id_claim, p.inspector_claim, p.inspector_value) == (
        "national_id",
        "groups",
        "dpa-inspectors",
    )
    assert p.cli_client_id == "cdx-cli" and p.public_key == b""


@pytest.mark.parametrize(
    "bad",
    [
        {"audience": ""},
        {"algorithms": ()},
        {"algorithms": ("none",)},
        {"algorithms": ("HS256",)},
        {"issuer": "http://id.example.gov.vn"},
        {"issuer": "https://id.example.gov.vn?tenant=1"},
        {"issuer": " https://id.example.gov.vn"},
        {"national_id_claim": "bad claim"},
        {"inspector_claim": "x" * 100},
    ],
)
def test_malformed_oidc_anchors_are_refused(registry: RegistryService, bad: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        registry.set_trust_anchors(identity_providers=[oidc(**bad)], actor=ACTOR)


def test_production_refuses_static_keys_development_providers_and_plain_http(
    registry: RegistryService,
) -> None:
    key = crypto.public_key_to_der(ed25519.Ed25519PrivateKey.generate().public_key())
    static = IdentityProviderInfo("urn:test:idp", key, False, "")
    registry.set_trust_anchors(identity_providers=[static], actor=ACTOR)  # offline tests: fine
    with pytest.raises(errors.InvalidArgumentError, match="static key"):
        registry.set_trust_anchors(production=True, actor=ACTOR)
    loopback = oidc(issuer="http://127.0.0.1:8090")
    registry.set_trust_anchors(identity_providers=[loopback], actor=ACTOR)
    with pytest.raises(errors.InvalidArgumentError, match="https"):
        registry.set_trust_anchors(production=True, actor=ACTOR)
    registry.set_trust_anchors(identity_providers=[oidc(development=True)], actor=ACTOR)
    with pytest.raises(errors.InvalidArgumentError, match="development"):
        registry.set_trust_anchors(production=True, actor=ACTOR)
    registry.set_trust_anchors(identity_providers=[oidc()], production=True, actor=ACTOR)
