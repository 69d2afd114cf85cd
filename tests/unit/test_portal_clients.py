"""The portal's adapters: real token verification for logins, and the protobuf mapping of the
gRPC clients (leaf bytes must survive it exactly, or no proof would ever verify)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdx import errors, merkle
from cdx.v1 import audit_pb2, consent_pb2
from portal.grpc_clients import consent_from_pb, entry_from_pb
from portal.identity import RegisteredIdentity
from tests.unit.portal_fakes import ALICE, INSPECTOR, NOW, FakeConfSource, World


@pytest.fixture
def world() -> World:
    return World()


def test_development_login_round_trips_through_registered_keys(world: World) -> None:
    idp = RegisteredIdentity(FakeConfSource(world.conf), world.dev_idp)
    assert idp.development
    citizen = idp.verify(idp.dev_login(ALICE, "citizen", NOW), NOW)
    assert (citizen.subject, citizen.role) == (ALICE, "citizen")
    assert citizen.expires_at > NOW
    inspector = idp.verify(idp.dev_login(INSPECTOR, "inspector", NOW), NOW)
    assert (inspector.subject, inspector.role) == (INSPECTOR, "inspector")
    with pytest.raises(errors.TokenExpiredError):
        idp.verify(idp.dev_login(ALICE, "citizen", NOW), NOW + timedelta(hours=2))
    with pytest.raises(errors.InvalidCitizenIdError):
        idp.dev_login("not-an-id", "citizen", NOW)


def test_development_login_is_refused_in_production(world: World) -> None:
    source = FakeConfSource(world.conf)
    idp = RegisteredIdentity(source, world.dev_idp)
    token = idp.dev_login(ALICE, "citizen", NOW)
    source.conf = world.resign(production=True)
    assert not idp.development
    with pytest.raises(errors.PermissionDeniedError):
        idp.dev_login(ALICE, "citizen", NOW)
    with pytest.raises(errors.TokenError):  # development tokens stop working at once
        idp.verify(token, NOW)


def test_tokens_of_an_unregistered_idp_are_refused(world: World) -> None:
    other = World()  # same issuer name, another key
    token = RegisteredIdentity(FakeConfSource(other.conf), other.dev_idp).dev_login(
        ALICE, "citizen", NOW
    )
    with pytest.raises(errors.TokenError):
        RegisteredIdentity(FakeConfSource(world.conf), world.dev_idp).verify(token, NOW)


def test_no_development_idp_means_no_development_login(world: World) -> None:
    idp = RegisteredIdentity(FakeConfSource(world.conf))
    assert not idp.development
    with pytest.raises(errors.PermissionDeniedError):
        idp.dev_login(ALICE, "citizen", NOW)


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
