"""Random protobufs at every endpoint of the consent service and the audit log, from every kind
of caller that gets past TLS: every failure carries a stable code other than ``internal``,
nothing hangs, and the services keep working afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.verify import Trust, verify_log
from cdx import db, rpc
from cdx.v1 import audit_pb2, consent_pb2
from tests.integration.audit_support import CITIZEN_A, CONSUMER, AuditWorld
from tests.integration.consent_env import ALICE, ConsentEnv, bearer, consent_env_fixture, terms

from .fuzzing import call_raw, fuzz_settings, random_requests, rpc_methods

pytestmark = pytest.mark.xdist_group("fuzz-grpc-services")

CONSENT = consent_pb2.DESCRIPTOR.services_by_name
CONSENT_METHODS = [m for name in CONSENT for m in rpc_methods(CONSENT[name])]
AUDIT_METHODS = rpc_methods(audit_pb2.DESCRIPTOR.services_by_name["AuditLog"])
Metadata = tuple[tuple[str, str], ...] | None


consent = consent_env_fixture("fuzz-consent")


def test_fuzz_consent_endpoints(consent: ConsentEnv) -> None:
    token = bearer(consent.token(ALICE))
    callers: dict[str, tuple[object, Metadata]] = {
        "citizen_public": (consent.channel(None, public=True), token),
        "citizen_public_no_token": (consent.channel(None, public=True), None),
        "security_server": (consent.channel(consent.server_identity("tax")), None),
        "information_system": (consent.channel(consent.client_identity("social")), None),
        # The representation authority (the population register): relations' parsers.
        "representation_authority": (consent.channel(consent.client_identity("population")), None),
        "server_relaying_a_token": (consent.channel(consent.server_identity("social")), token),
    }

    @fuzz_settings(scale=3)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(CONSENT_METHODS), label="method")
        # The public port serves only the citizen API (anything else is simply not there).
        public = method.containing_service.name == "CitizenConsent"
        names = sorted(c for c in callers if public or not c.startswith("citizen_public"))
        channel, metadata = callers[data.draw(st.sampled_from(names), label="caller")]
        payload = data.draw(random_requests(method), label="payload")
        call_raw(channel, method, payload, metadata=metadata, timeout=3.0)

    fuzz()
    # Still working: a citizen grants a consent.
    granted = consent.citizen().Grant(
        consent_pb2.GrantRequest(terms=terms(ALICE)),
        metadata=bearer(consent.token(ALICE)),
        timeout=10,
    )
    assert granted.state == consent_pb2.ACTIVE


@pytest.fixture(scope="module")
def audit(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[AuditWorld, dict[str, object]]]:
    engine = db.create_engine(db.sqlite_url(Path(tmp_path_factory.mktemp("fuzz-audit")) / "a.db"))
    world = AuditWorld()
    running = world.start(engine, checkpoint_interval=1.0)
    channels = {
        "security_server": rpc.secure_channel(running.address, world.servers[CONSUMER].tls),
        "inspector": rpc.secure_channel(running.address, world.inspector_tls),
        "portal": rpc.secure_channel(running.address, world.portal_tls),
        "admin": rpc.secure_channel(running.address, world.stranger_tls),
    }
    yield world, channels
    for channel in channels.values():
        channel.close()  # type: ignore[attr-defined]
    running.stop()


def test_fuzz_audit_endpoints(audit: tuple[AuditWorld, dict[str, object]]) -> None:
    world, channels = audit
    tokens: dict[str, Metadata] = {
        "none": None,
        "citizen": bearer(world.token(CITIZEN_A)),
        "inspector": bearer(world.token("dpa-x", "inspector")),
        "garbage": bearer("not.a.token"),
    }

    @fuzz_settings(scale=3)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(AUDIT_METHODS), label="method")
        channel = channels[data.draw(st.sampled_from(sorted(channels)), label="caller")]
        metadata = tokens[data.draw(st.sampled_from(sorted(tokens)), label="token")]
        payload = data.draw(random_requests(method), label="payload")
        call_raw(channel, method, payload, metadata=metadata, timeout=5.0)

    fuzz()
    # Still working: a server appends, and the whole log verifies.
    inspector, server = world.client(world.inspector_tls), world.client(CONSUMER)
    try:
        assert not server.ship([world.item(CONSUMER)])[0].error_code
        report = verify_log(inspector, Trust.from_conf(world.conf()))
        assert report.ok, [str(f) for f in report.errors]
    finally:
        inspector.close()
        server.close()
