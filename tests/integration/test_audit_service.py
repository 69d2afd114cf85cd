"""The audit log over gRPC with mutual TLS: appends, proofs, search, history, witnesses, verify."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit import notes
from audit.client import AuditClient
from audit.server import RunningAudit
from audit.verify import Trust, verify_log
from audit.witness import Witness
from cdx import crypto, db, errors, merkle, note, records
from cdx.v1 import audit_pb2, common_pb2
from tests.conftest import require_postgres
from tests.integration.audit_support import (
    CITIZEN_A,
    CITIZEN_B,
    CONSUMER,
    PROVIDER,
    AuditWorld,
)


@dataclass
class Running:
    world: AuditWorld
    audit: RunningAudit
    consumer: AuditClient
    provider: AuditClient
    inspector: AuditClient
    portal: AuditClient

    def publish(self) -> audit_pb2.Checkpoint:
        """Publish a checkpoint now (instead of waiting for the interval) and return it."""
        self.audit.checkpointer.publish_once()
        return self.inspector.checkpoint()

    def root_of(self, served: audit_pb2.Checkpoint) -> tuple[int, bytes]:
        conf = self.world.conf()
        opened = notes.open_log_checkpoint(
            served.note, notes.log_verifier(conf.audit_log_key), conf.audit_log_origin
        )
        return opened.size, opened.root


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    schema = None
    if request.param == "sqlite":
        engine = db.create_engine(
            db.sqlite_url(Path(tmp_path_factory.mktemp("audit")) / "audit.db")
        )
    else:
        schema = f"t_audit_svc_{uuid.uuid4().hex[:10]}"
        engine = db.create_engine(require_postgres(), schema=schema)
    world = AuditWorld(quorum=2)
    audit = world.start(engine, checkpoint_interval=5.0)
    clients = [
        world.client(CONSUMER),
        world.client(PROVIDER),
        world.client(world.inspector_tls),
        world.client(world.portal_tls),
    ]
    try:
        yield Running(world, audit, *clients)
    finally:
        for c in clients:
            c.close()
        audit.stop()
        if schema:
            db.drop_schema(require_postgres(), schema)


def ship_exchange(
    r: Running, subject: str = CITIZEN_A, **kw: object
) -> list[audit_pb2.AppendResult]:
    consumer_item, provider_item = r.world.exchange(subject, **kw)
    results = r.consumer.ship([consumer_item]) + r.provider.ship([provider_item])
    assert all(not x.error_code for x in results), results
    return results


def test_records_reach_the_log_with_proofs_against_a_signed_checkpoint(running: Running) -> None:
    results = ship_exchange(running)
    size, root = running.root_of(running.publish())
    for result in results:
        proof = running.inspector.inclusion_proof(record_id=result.record_id)
        assert proof.index == result.index and proof.tree_size == size
        (entry,) = running.inspector.entries(result.index, result.index + 1)
        leaf = merkle.leaf_hash(entry.record.SerializeToString(deterministic=True))
        merkle.verify_inclusion(leaf, proof.index, size, list(proof.hashes), root)
        record = audit_pb2.AccessRecord.FromString(entry.record.record)
        assert record.record_id == result.record_id
        assert CITIZEN_A.encode() not in entry.SerializeToString()  # only a salted commitment


def test_append_is_idempotent(running: Running) -> None:
    item = running.world.item(CONSUMER)
    (first,) = running.consumer.ship([item])
    (again,) = running.consumer.ship([item])
    assert not first.duplicate and again.duplicate and again.index == first.index


def test_a_server_appends_only_its_own_records(running: Running) -> None:
    theirs = running.world.item(PROVIDER)
    mine = running.world.item(CONSUMER)
    refused, accepted = running.consumer.ship([theirs, mine])
    assert refused.error_code == errors.PermissionDeniedError.code
    assert not accepted.error_code


def test_an_altered_record_is_refused_and_its_batch_neighbours_are_kept(running: Running) -> None:
    bad = running.world.item(CONSUMER)
    record = audit_pb2.AccessRecord.FromString(bad.record.record)
    record.purpose = "TAX_ASSESSMENT"
    bad.record.record = record.SerializeToString()
    good = running.world.item(CONSUMER)
    refused, accepted = running.consumer.ship([bad, good])
    assert refused.error_code == errors.SignatureError.code
    assert not accepted.error_code
    with pytest.raises(errors.NotFoundError):
        running.inspector.inclusion_proof(record_id=record.record_id)


def test_an_opening_that_does_not_open_the_commitment_is_refused(running: Running) -> None:
    item = running.world.item(CONSUMER)
    item.opening.subject = CITIZEN_B  # claims another citizen than the record commits to
    (result,) = running.consumer.ship([item])
    assert result.error_code == errors.VerificationError.code


@pytest.mark.parametrize("who", ["inspector", "stranger", "portal"])
def test_only_registered_security_servers_append(running: Running, who: str) -> None:
    identity = {
        "inspector": running.world.inspector_tls,
        "stranger": running.world.stranger_tls,
        "portal": running.world.portal_tls,
    }[who]
    with running.world.client(identity) as client, pytest.raises(errors.PermissionDeniedError):
        client.ship([running.world.item(CONSUMER)])


def test_a_server_certificate_not_in_global_conf_is_refused(running: Running) -> None:
    other = AuditWorld(servers=(CONSUMER,))  # same server id, certificate from another CA
    client = AuditClient(running.world.audit_address, other.servers[CONSUMER].tls)
    with client, pytest.raises(errors.UnavailableError):
        client.ship([running.world.item(CONSUMER)])
    # Same CA and server id, but not the certificate global configuration pins.
    reissued = running.world._server(CONSUMER)
    # A server id that is not registered at all.
    rogue = running.world._server("VN:GOV:XXX:ss1")
    for server in (reissued, rogue):
        client = AuditClient(running.world.audit_address, server.tls)
        with client, pytest.raises(errors.PeerNotRegisteredError):
            client.ship([running.world.item(CONSUMER)])


def _history(r: Running, subject: str) -> audit_pb2.CitizenHistoryResponse:
    return r.portal.citizen_history(r.world.token(subject), limit=500)


def test_a_citizen_sees_own_entries_with_proofs_and_nobody_elses(running: Running) -> None:
    mine = ship_exchange(running, CITIZEN_A) + ship_exchange(running, CITIZEN_A)
    theirs = ship_exchange(running, CITIZEN_B)
    running.publish()
    history = _history(running, CITIZEN_A)
    size, root = running.root_of(history.checkpoint)
    assert size == history.checkpoint.size
    shown = {e.record.record_id for e in history.entries}
    assert {r.record_id for r in mine} <= shown
    assert not {r.record_id for r in theirs} & shown
    for e in history.entries:
        leaf = merkle.leaf_hash(e.entry.record.SerializeToString(deterministic=True))
        assert leaf == e.proof.leaf_hash
        merkle.verify_inclusion(leaf, e.entry.index, size, list(e.proof.hashes), root)
        if e.record.kind == "access":
            assert e.opening.subject == CITIZEN_A
            assert (
                crypto.commitment(e.opening.subject_salt, CITIZEN_A.encode())
                == e.record.subject_commitment
            )
    other = _history(running, CITIZEN_B)
    assert {r.record_id for r in theirs} <= {e.record.record_id for e in other.entries}


def test_citizen_history_needs_a_citizen_token_relayed_by_the_portal(running: Running) -> None:
    with pytest.raises(errors.UnauthenticatedError):
        running.portal.citizen_history("")
    with pytest.raises(errors.PermissionDeniedError):  # only the portal relays tokens
        running.inspector.citizen_history(running.world.token(CITIZEN_A))
    with pytest.raises(errors.PermissionDeniedError):
        running.portal.citizen_history(running.world.token("dpa-bob", "inspector"))
    with pytest.raises(errors.TokenError):
        running.portal.citizen_history(running.world.token(CITIZEN_A) + "x")


def test_sealed_entries_stay_hidden_until_an_inspector_unseals_them(running: Running) -> None:
    sealed = ship_exchange(running, CITIZEN_A, sealed=True)
    running.publish()
    shown = {e.record.record_id for e in _history(running, CITIZEN_A).entries}
    assert not {r.record_id for r in sealed} & shown
    found = running.inspector.search(
        audit_pb2.SearchRequest(message_id=_message_id(running, sealed[0]))
    )
    assert [h.sealed for h in found.hits] == [True, True]
    with pytest.raises(errors.ReasonRequiredError):
        running.inspector.unseal(sealed[1].record_id, "")
    unsealed = running.inspector.unseal(sealed[1].record_id, "investigation closed")
    with pytest.raises(errors.FailedPreconditionError):
        running.inspector.unseal(sealed[1].record_id, "unsealing it a second time")
    running.publish()
    entries = {e.record.record_id: e for e in _history(running, CITIZEN_A).entries}
    assert sealed[1].record_id in entries and entries[sealed[1].record_id].unsealed
    assert sealed[0].record_id not in entries  # the consumer's side is still sealed
    notice = entries[unsealed.record_id]
    assert notice.record.kind == "unseal" and notice.record.note == "investigation closed"
    assert notice.record.target_record_id == sealed[1].record_id


def _message_id(r: Running, result: audit_pb2.AppendResult) -> str:
    (entry,) = r.inspector.entries(result.index, result.index + 1)
    return audit_pb2.AccessRecord.FromString(entry.record.record).message_id


def test_inspector_search_is_logged_and_a_subject_search_needs_a_reason(running: Running) -> None:
    ship_exchange(running, CITIZEN_B, allowed=False)
    with pytest.raises(errors.PermissionDeniedError):
        running.consumer.search(audit_pb2.SearchRequest())
    with pytest.raises(errors.ReasonRequiredError):
        running.inspector.search(audit_pb2.SearchRequest(subject=CITIZEN_B))
    response = running.inspector.search(
        audit_pb2.SearchRequest(
            subject=CITIZEN_B, reason="complaint 2025/17", decision=common_pb2.DENY
        )
    )
    assert response.hits and all(h.record.decision == common_pb2.DENY for h in response.hits)
    logged = running.inspector.inclusion_proof(
        record_id=response.query_record_id, tree_size=running.audit.store.tree_state().size
    )
    (entry,) = running.inspector.entries(logged.index, logged.index + 1)
    query = audit_pb2.AccessRecord.FromString(entry.record.record)
    assert (query.kind, query.note, query.actor) == (
        "inspector_query",
        "complaint 2025/17",
        "dpa-alice",
    )
    assert CITIZEN_B.encode() not in entry.SerializeToString()
    running.publish()
    # The citizen sees that an inspector looked, and why.
    seen = {e.record.record_id: e.record for e in _history(running, CITIZEN_B).entries}
    assert seen[response.query_record_id].note == "complaint 2025/17"
    # An inspector token relayed by the portal works too, and is logged under its principal.
    by_token = running.portal.search(
        audit_pb2.SearchRequest(client="VN:GOV:VSS"),
        token=running.world.token("dpa-bob", "inspector"),
    )
    assert by_token.hits and by_token.query_record_id
    size = running.audit.store.tree_state().size
    logged = running.inspector.inclusion_proof(record_id=by_token.query_record_id, tree_size=size)
    (entry,) = running.inspector.entries(logged.index, logged.index + 1)
    actor = audit_pb2.AccessRecord.FromString(entry.record.record).actor
    assert actor.startswith("token:") and "dpa-bob" not in actor  # a pseudonym, not the subject


def test_witnesses_cosign_and_the_log_serves_their_cosignatures(
    running: Running, tmp_path: Path
) -> None:
    ship_exchange(running)
    running.publish()
    witnesses = [
        Witness(
            sid,
            running.world.servers[sid].witness_key,
            client,
            running.world.conf,
            tmp_path / f"{sid}.json",
        )
        for sid, client in ((CONSUMER, running.consumer), (PROVIDER, running.provider))
    ]
    for w in witnesses:
        w.poll_once()
    served = running.inspector.checkpoint(min_cosignatures=2)
    assert served.cosignatures == 2
    conf = running.world.conf()
    opened = notes.open_log_checkpoint(
        served.note,
        notes.log_verifier(conf.audit_log_key),
        conf.audit_log_origin,
        notes.witness_verifiers(conf).values(),
    )
    assert set(opened.cosigned_by) == {notes.witness_name(CONSUMER), notes.witness_name(PROVIDER)}
    report = verify_log(running.inspector, Trust.from_conf(conf), require_quorum=True)
    assert report.ok, [str(f) for f in report.errors]
    # Nobody cosigns in another server's name, and a forged cosignature is refused.
    text = opened.text
    line = note.CosignatureSigner(
        notes.witness_name(PROVIDER), running.world.servers[PROVIDER].witness_key
    ).cosign(text, 1)
    with pytest.raises(errors.PermissionDeniedError):
        running.consumer.add_cosignature(text, line, PROVIDER)
    forged = note.CosignatureSigner(
        notes.witness_name(CONSUMER), running.world.servers[PROVIDER].witness_key
    ).cosign(text, 1)
    with pytest.raises(errors.NoteSignatureError):
        running.consumer.add_cosignature(text, forged, CONSUMER)


def test_the_whole_log_verifies_over_grpc(running: Running) -> None:
    ship_exchange(running)
    running.publish()
    report = verify_log(running.inspector, Trust.from_conf(running.world.conf()))
    assert report.ok, [str(f) for f in report.errors]
    assert report.entries_checked == running.audit.store.tree_state().size
    assert report.messages_paired >= 1


def test_two_audit_services_on_one_database_keep_one_log(db_url_factory: object) -> None:
    url, schema = db_url_factory("two")  # type: ignore[operator]
    world = AuditWorld()
    first = world.start(db.create_engine(url, schema=schema), checkpoint_interval=1.0)
    second = world.start(db.create_engine(url, schema=schema), checkpoint_interval=1.0)
    results: list[audit_pb2.AppendResult] = []
    failures: list[BaseException] = []

    def ship(address: str, server: str, n: int) -> None:
        try:
            with AuditClient(address, world.servers[server].tls) as client:
                for _ in range(n):
                    items = [world.item(server) for _ in range(5)]
                    results.extend(client.ship(items))
                    results.extend(client.ship(items[:2]))  # a retry, possibly to the other one
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [
        threading.Thread(target=ship, args=(a.address, s, 15))
        for a in (first, second)
        for s in (CONSUMER, PROVIDER)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures and not [r for r in results if r.error_code]
        fresh = {(r.record_id, r.index) for r in results if not r.duplicate}
        assert len(fresh) == 4 * 15 * 5 and len({i for _, i in fresh}) == len(fresh)
        first.checkpointer.publish_once()
        second.checkpointer.publish_once()
        with world.client(world.inspector_tls) as inspector:
            report = verify_log(inspector, Trust.from_conf(world.conf()))
        assert report.ok, [str(f) for f in report.errors]
        assert report.entries_checked == len(fresh)
    finally:
        first.stop()
        second.stop()


def test_control_characters_are_refused_with_a_code_and_long_names_capped(
    running: Running,
) -> None:
    # On PostgreSQL too: the refusal is per item and its batch neighbour is appended.
    hostile = running.world.item(PROVIDER, allowed=False)
    record = audit_pb2.AccessRecord.FromString(hostile.record.record)
    record.purpose = "BENEFIT\x00\n"
    hostile.record.CopyFrom(
        records.sign_access_record(record, running.world.servers[PROVIDER].signer)
    )
    long_name = running.world.item(PROVIDER, allowed=False)
    named = audit_pb2.AccessRecord.FromString(long_name.record.record)
    named.client = "VN:GOV:" + "X" * 500
    long_name.record.CopyFrom(
        records.sign_access_record(named, running.world.servers[PROVIDER].signer)
    )
    refused, stored, neighbour = running.provider.ship(
        [hostile, long_name, running.world.item(PROVIDER)]
    )
    assert refused.error_code == "unsafe_characters"
    assert not stored.error_code and not neighbour.error_code
    assert running.audit.store.find_record(record.record_id) is None
    row = running.audit.store.find_record(named.record_id)
    assert row is not None and len(row.client) == 300
    (entry,) = running.inspector.entries(stored.index, stored.index + 1)
    assert audit_pb2.AccessRecord.FromString(entry.record.record).client == named.client
    kept = running.inspector.list_refused(recorder=PROVIDER)
    assert (record.record_id, "unsafe_characters") in {(r.record_id, r.code) for r in kept}


def test_only_an_empty_log_anchors_the_log_it_continues(running: Running) -> None:
    """Temporal sharding: an anchor is a period's first entry, never one in the middle of a log
    (a log could otherwise point verifiers at another log); ``tests/integration/
    test_audit_periods.py`` starts real periods and verifies across them."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    running.provider.ship([running.world.item(PROVIDER)])
    previous = note.NoteSigner("cdx.test/audit/2025", Ed25519PrivateKey.generate())
    last = previous.sign(note.Checkpoint(previous.name, 1234, bytes(32)).to_text())
    before = running.audit.store.tree_state().size
    with pytest.raises(errors.FailedPreconditionError):
        running.audit.service.anchor_previous_log(last, previous.verifier(), previous.name)
    assert running.audit.store.tree_state().size == before
    stranger = note.NoteSigner(previous.name, Ed25519PrivateKey.generate())
    with pytest.raises(errors.NoteSignatureError):  # not the previous log's key: checked first
        running.audit.service.anchor_previous_log(
            stranger.sign(note.Checkpoint(previous.name, 1, bytes(32)).to_text()),
            previous.verifier(),
            previous.name,
        )
