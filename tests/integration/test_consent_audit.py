"""Consent lifecycle events reach the audit log (DESIGN §7 "itself logged").

A whole instance (``start_portal_env``) plus a consent service over the same database that
ships its events to the audit log: the citizen sees her approve and revoke in her history,
verified like any entry (consent service key, inclusion proof, opening), another citizen does
not, ``verify_log`` covers them, and while the log is down events wait and then arrive once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.client import AuditClient
from audit.verify import Trust, verify_log
from cdx import crypto, records, rpc
from cdx.v1 import audit_pb2, consent_pb2
from consent.auditlog import ConsentAuditShipper
from consent.server import RunningConsent
from portal.grpc_clients import GrpcAuditClient
from portal.verify import LogTrust, Status, check_checkpoint, check_record
from tests.e2e.portal_env import CITIZEN_A, CITIZEN_B, PortalEnv, start_portal_env
from tests.integration.consent_env import SOCIAL, SOCIAL_SUBSYSTEM, bearer, terms
from tests.waiting import eventually


@pytest.fixture(scope="module")
def penv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalEnv]:
    env = start_portal_env(tmp_path_factory.mktemp("consent-audit"))
    try:
        yield env
    finally:
        env.close()


def _shipping(penv: PortalEnv) -> RunningConsent:
    """A consent service over the same database, shipping its events to the audit log fast."""
    return penv.consent_env.start_replica(audit_log=True, audit_interval=0.1, audit_max_backoff=0.3)


@pytest.fixture(scope="module")
def shipping(penv: PortalEnv) -> RunningConsent:
    return _shipping(penv)


@pytest.fixture(scope="module")
def portal_identity(penv: PortalEnv) -> rpc.TlsIdentity:
    """The token relay's identity (the portal's): it alone may read a citizen's history."""
    return penv.portal_identity


def _request(penv: PortalEnv, citizen: str) -> str:
    env = penv.consent_env
    requested = env.agency_api(env.server_identity(SOCIAL)).RequestConsent(
        consent_pb2.RequestConsentRequest(
            requester=SOCIAL_SUBSYSTEM, terms=terms(citizen, fields=("annual_income",))
        ),
        timeout=10,
    )
    return str(requested.id)


def _act(penv: PortalEnv, citizen: str, action: str, consent_id: str) -> None:
    env = penv.consent_env
    getattr(env.citizen(), action)(
        consent_pb2.ConsentActionRequest(consent_id=consent_id),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def _consent_events(
    penv: PortalEnv, relay: rpc.TlsIdentity, citizen: str, consent_id: str
) -> list[tuple[str, Status, audit_pb2.AccessRecord]]:
    """The citizen's consent_event entries of ``consent_id`` as the portal checks them."""
    conf = penv.consent_env.conf_client.current()
    trust = LogTrust.from_conf(conf)
    client = GrpcAuditClient(lambda: conf.audit_log_address, relay)
    try:
        history = client.citizen_history(penv.token(citizen), 200)
    finally:
        client.close()
    checkpoint = check_checkpoint(history.checkpoint.note, trust) if history.checkpoint else None
    out = []
    for item in history.items:
        signed = audit_pb2.SignedAccessRecord.FromString(item.entry.leaf_data)
        record = audit_pb2.AccessRecord.FromString(signed.record)
        if record.kind != "consent_event" or record.consent_id != consent_id:
            continue
        checked = check_record(
            item.entry, item.proof, checkpoint, trust, opening=item.opening, subject=citizen
        )
        out.append((record.reason_code, checked.status, record))
    return out


def _all_verified(
    penv: PortalEnv, relay: rpc.TlsIdentity, citizen: str, consent_id: str, actions: set[str]
) -> list[tuple[str, Status, audit_pb2.AccessRecord]] | None:
    events = _consent_events(penv, relay, citizen, consent_id)
    if {a for a, _, _ in events} != actions or any(s != Status.VERIFIED for _, s, _ in events):
        return None
    return events


def _log_record_ids(penv: PortalEnv) -> list[str]:
    with AuditClient(penv.audit.address, penv.consent_env.identity) as client:
        size = client.checkpoint().size
        return [
            audit_pb2.AccessRecord.FromString(e.record.record).record_id
            for e in client.iter_entries(0, size)
        ]


def test_approve_and_revoke_appear_verified_in_the_citizens_history_only(
    penv: PortalEnv, shipping: RunningConsent, portal_identity: rpc.TlsIdentity
) -> None:
    consent_id = _request(penv, CITIZEN_A)
    _act(penv, CITIZEN_A, "Approve", consent_id)
    _act(penv, CITIZEN_A, "Revoke", consent_id)
    other = _request(penv, CITIZEN_B)
    _act(penv, CITIZEN_B, "Reject", other)

    events = eventually(
        lambda: _all_verified(
            penv, portal_identity, CITIZEN_A, consent_id, {"requested", "approved", "revoked"}
        )
    )
    conf = penv.consent_env.conf_client.current()
    consent_key = crypto.as_signing_public_key(
        crypto.public_key_from_der(conf.consent_service_key_der)
    )
    for action, _, record in events:
        assert record.recorder == "urn:cdx:service:consent"
        assert record.note == action
        assert record.client == SOCIAL_SUBSYSTEM
        assert record.decision == 1 and record.lawful_basis == 1  # ALLOW, CONSENT
        assert CITIZEN_A not in record.SerializeToString().decode("latin-1")
    # The other citizen's history holds her own reject, never the first citizen's consent.
    assert not _consent_events(penv, portal_identity, CITIZEN_B, consent_id)
    eventually(
        lambda: _all_verified(penv, portal_identity, CITIZEN_B, other, {"requested", "rejected"})
    )

    # ``cdx audit verify`` checks the consent events' signatures under the consent key.
    with AuditClient(penv.audit.address, penv.consent_env.identity) as client:
        report = verify_log(client, Trust.from_conf(conf))
        assert report.ok, [f.code for f in report.errors]
        entry = next(
            e
            for e in client.iter_entries(0, report.tree_size)
            if audit_pb2.AccessRecord.FromString(e.record.record).consent_id == consent_id
        )
    assert records.verify_access_record(entry.record, consent_key).kind == "consent_event"


def test_events_wait_while_the_audit_log_is_down_and_arrive_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    penv = start_portal_env(tmp_path)  # its own: this test stops the audit log
    try:
        shipper = _shipping(penv).audit_shipper
        assert isinstance(shipper, ConsentAuditShipper)
        eventually(lambda: shipper.pending() == 0, what="earlier events shipped")
        penv.audit.stop(0)

        consent_id = _request(penv, CITIZEN_A)
        with caplog.at_level(logging.WARNING, logger="consent.auditlog"):
            _act(penv, CITIZEN_A, "Approve", consent_id)
            _act(penv, CITIZEN_A, "Revoke", consent_id)

            def failed_attempts() -> int:
                return sum("wait for the audit log" in r.getMessage() for r in caplog.records)

            eventually(lambda: failed_attempts() >= 3, what="shipping attempts failing")
        assert shipper.pending() == 3

        penv.start_audit()  # on the address global configuration names
        relay = penv.portal_identity
        eventually(
            lambda: _all_verified(
                penv, relay, CITIZEN_A, consent_id, {"requested", "approved", "revoked"}
            ),
            what="the events verified in the citizen's history",
        )
        assert shipper.pending() == 0
        assert len(_consent_events(penv, relay, CITIZEN_A, consent_id)) == 3
        ids = _log_record_ids(penv)
        assert len(ids) == len(set(ids))  # nothing was appended twice
    finally:
        penv.close()


def test_the_log_takes_only_consent_events_signed_by_the_consent_key(penv: PortalEnv) -> None:
    env = penv.consent_env
    good = crypto.KeySigner(env.signing_key)
    other = crypto.KeySigner(crypto.generate_signing_key("ed25519"))

    def item(kind: str, signer: crypto.Signer, record_id: str) -> audit_pb2.OutboxItem:
        record = audit_pb2.AccessRecord(
            record_id=record_id, time_ms=1, recorder=records.CONSENT_RECORDER, kind=kind
        )
        return audit_pb2.OutboxItem(record=records.sign_access_record(record, signer))

    with AuditClient(penv.audit.address, env.identity) as client:
        results = client.ship(
            [
                item("access", good, "forged-access"),
                item("consent_event", other, "forged-key"),
                item("consent_event", good, "genuine-event"),
            ]
        )
    assert [bool(r.error_code) for r in results] == [True, True, False]
    # A security server may not append consent events.
    server = env.server_identity(SOCIAL)
    signed = records.sign_access_record(
        audit_pb2.AccessRecord(
            record_id="server-event",
            time_ms=1,
            recorder=records.CONSENT_RECORDER,
            kind="consent_event",
        ),
        good,
    )
    with AuditClient(penv.audit.address, server) as client:
        (result,) = client.ship([audit_pb2.OutboxItem(record=signed)])
    assert result.error_code == "permission_denied"
