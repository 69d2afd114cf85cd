"""The ``cdx audit verify`` engine against an in-memory log: what passes and what is caught."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import notes
from audit.verify import Trust, verify_log
from cdx import merkle, note, records
from cdx.v1 import audit_pb2, common_pb2
from tests.unit.audit_fakes import CONSUMER, ORIGIN, PROVIDER, FakeLog, Keys, exchange, record


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def trust(keys: Keys, **kw: object) -> Trust:
    return Trust(keys.log.verifier(), ORIGIN, keys.public(), **kw)  # type: ignore[arg-type]


def healthy_log(keys: Keys, messages: int = 10) -> FakeLog:
    log = FakeLog(keys)
    log.publish()  # the empty tree's checkpoint
    for i in range(messages):
        log.append(*exchange(keys))
        if i % 3 == 2:
            log.publish()
    log.publish()
    return log


def codes(report: object, severity: str = "error") -> list[str]:
    return [f.code for f in report.findings if f.severity == severity]  # type: ignore[attr-defined]


def test_an_intact_log_verifies_and_pairs_every_message(keys: Keys) -> None:
    log = healthy_log(keys)
    progress: list[tuple[int, int]] = []
    report = verify_log(log, trust(keys), progress=lambda d, t: progress.append((d, t)))
    assert report.ok, report.findings
    assert report.tree_size == 20
    assert report.entries_checked == 20
    assert report.signatures_checked == 20
    assert report.messages_paired == 10
    assert report.root == log.tree.root()
    assert progress[-1] == (20, 20)


def test_a_record_altered_in_storage_is_named(keys: Keys) -> None:
    log = healthy_log(keys)
    victim = log.entries[7]
    changed = audit_pb2.AccessRecord.FromString(victim.record)
    changed.purpose = "TAX_ASSESSMENT"
    log.entries[7] = audit_pb2.SignedAccessRecord(
        record=changed.SerializeToString(deterministic=True),
        signature=victim.signature,
        key_id=victim.key_id,
    )
    report = verify_log(log, trust(keys))
    assert not report.ok
    named = {(f.code, f.index) for f in report.errors}
    assert ("invalid_record_signature", 7) in named
    assert ("entry_altered", 7) in named
    altered = next(f for f in report.errors if f.code == "entry_altered")
    assert altered.record_id == changed.record_id


def test_a_validly_signed_record_swapped_in_is_located_by_proofs(keys: Keys) -> None:
    # The swapped-in record carries a valid signature (it is another real record), so only
    # the tree can tell: the verifier walks inclusion proofs down to the entry.
    log = healthy_log(keys)
    log.entries[13] = log.entries[2]
    report = verify_log(log, trust(keys))
    assert not report.ok
    assert ("entry_altered", 13) in {(f.code, f.index) for f in report.errors}
    assert "duplicate_record_id" in codes(report)
    assert "invalid_record_signature" not in codes(report)


def test_a_truncated_log_is_detected(keys: Keys) -> None:
    log = healthy_log(keys)
    del log.entries[-3:]
    report = verify_log(log, trust(keys))
    assert "log_truncated" in codes(report)


def test_truncation_with_rewritten_checkpoints_is_caught_by_a_kept_checkpoint(keys: Keys) -> None:
    log = healthy_log(keys)
    kept = log.notes[-1]
    # The operator removes the tail and every checkpoint that covered it, then re-signs.
    del log.entries[-4:]
    log.notes = [n for n in log.notes if note.Checkpoint.parse(note.parse_note(n).text).size <= 16]
    assert verify_log(log, trust(keys)).ok  # on its own, the rewritten log looks fine
    report = verify_log(log, trust(keys), known_checkpoints=[kept])
    assert "log_truncated" in codes(report)


def test_a_forked_checkpoint_is_detected(keys: Keys) -> None:
    log = healthy_log(keys)
    size = log.tree.size
    fork = note.Checkpoint(ORIGIN, size, merkle.leaf_hash(b"another history")).to_text()
    log.notes.insert(1, keys.log.sign(fork))
    report = verify_log(log, trust(keys))
    assert "forked_checkpoints" in codes(report)
    assert "checkpoint_root_mismatch" in codes(report)


def test_a_checkpoint_of_an_unlogged_history_is_detected(keys: Keys) -> None:
    log = healthy_log(keys)
    log.append(*exchange(keys))
    log.publish(root=merkle.leaf_hash(b"not these entries"))
    report = verify_log(log, trust(keys))
    assert "checkpoint_root_mismatch" in codes(report)


def test_a_checkpoint_signed_by_another_key_is_rejected(keys: Keys) -> None:
    log = healthy_log(keys)
    impostor = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    log.append(*exchange(keys))
    log.publish(signer=impostor)
    report = verify_log(log, trust(keys))
    assert "invalid_checkpoint_signature" in codes(report)


def test_a_record_by_an_unknown_recorder_fails(keys: Keys) -> None:
    log = healthy_log(keys)
    rogue = records.sign_access_record(
        record("VN:GOV:XXX:ss9", common_pb2.PROVIDER),
        keys.servers[PROVIDER],
    )
    log.append(rogue)
    log.publish()
    assert "unknown_recorder" in codes(verify_log(log, trust(keys)))


def test_one_sided_allowed_messages_are_errors_once_old(keys: Keys) -> None:
    log = healthy_log(keys)
    old = int(time.time() * 1000) - 3_600_000
    lonely = record(PROVIDER, common_pb2.PROVIDER, time_ms=old)
    log.append(records.sign_access_record(lonely, keys.servers[PROVIDER]))
    log.append(*exchange(keys))  # a newer entry, so the lonely one is past the grace period
    log.publish()
    report = verify_log(log, trust(keys), grace_ms=60_000)
    one_sided = [f for f in report.errors if f.code == "one_sided_message"]
    assert [f.record_id for f in one_sided] == [lonely.record_id]


def test_recent_one_sided_messages_are_only_warnings(keys: Keys) -> None:
    log = healthy_log(keys)
    log.append(
        records.sign_access_record(record(PROVIDER, common_pb2.PROVIDER), keys.servers[PROVIDER])
    )
    log.publish()
    report = verify_log(log, trust(keys))
    assert report.ok
    assert "one_sided_message" in codes(report, "warning")


def test_a_consumer_side_refusal_is_one_sided_by_design(keys: Keys) -> None:
    log = healthy_log(keys)
    refused = record(CONSUMER, common_pb2.CONSUMER, decision=common_pb2.DENY, time_ms=1)
    log.append(records.sign_access_record(refused, keys.servers[CONSUMER]))
    log.publish()
    report = verify_log(log, trust(keys))
    assert report.ok
    assert "one_sided_message" in codes(report, "info")


def test_sides_that_disagree_are_reported(keys: Keys) -> None:
    log = healthy_log(keys)
    mid = "m-disagree"
    log.append(
        records.sign_access_record(
            record(CONSUMER, common_pb2.CONSUMER, message_id=mid), keys.servers[CONSUMER]
        ),
        records.sign_access_record(
            record(PROVIDER, common_pb2.PROVIDER, message_id=mid, decision=common_pb2.DENY),
            keys.servers[PROVIDER],
        ),
    )
    log.publish()
    assert "sides_disagree" in codes(verify_log(log, trust(keys)))


def test_witness_cosignatures_count_towards_the_quorum(keys: Keys) -> None:
    log = healthy_log(keys)
    witness_key = Ed25519PrivateKey.generate()
    name = notes.witness_name("VN:GOV:GDT:ss1")
    cosigner = note.CosignatureSigner(name, witness_key)
    text = note.parse_note(log.notes[-1]).text
    log.notes[-1] += cosigner.cosign(text, int(time.time()))
    witnesses = {name: cosigner.verifier()}
    report = verify_log(log, trust(keys, witnesses=witnesses, quorum=1))
    assert report.ok and report.cosigned_by == (name,)
    report = verify_log(log, trust(keys, witnesses=witnesses, quorum=2))
    assert report.ok and "quorum_not_met" in codes(report, "warning")
    report = verify_log(log, trust(keys, witnesses=witnesses, quorum=2), require_quorum=True)
    assert "quorum_not_met" in codes(report)


def test_a_forged_cosignature_is_an_error(keys: Keys) -> None:
    log = healthy_log(keys)
    name = notes.witness_name("VN:GOV:GDT:ss1")
    real = note.CosignatureSigner(name, Ed25519PrivateKey.generate())
    forger = note.CosignatureSigner(name, Ed25519PrivateKey.generate())
    # Same name, the real witness's key id, the forger's signature bytes.
    forged = note.NoteSignature.parse_line(forger.cosign(note.parse_note(log.notes[-1]).text, 5))
    log.notes[-1] += note.NoteSignature(name, real.key_id, forged.signature).to_line()
    report = verify_log(log, trust(keys, witnesses={name: real.verifier()}))
    assert "invalid_cosignature" in codes(report)


def test_no_checkpoint_means_nothing_verified(keys: Keys) -> None:
    log = FakeLog(keys)
    log.append(*exchange(keys))
    report = verify_log(log, trust(keys))
    assert codes(report) == ["no_checkpoint"]


def test_signatures_checked_in_worker_processes_still_name_the_altered_record(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audit.verify

    monkeypatch.setattr(audit.verify, "_PROCESS_THRESHOLD", 0)
    monkeypatch.setattr(audit.verify, "_SIGNATURE_CHUNK", 4)
    log = healthy_log(keys)
    victim = log.entries[9]
    changed = audit_pb2.AccessRecord.FromString(victim.record)
    changed.decision = common_pb2.ALLOW if changed.decision == common_pb2.DENY else common_pb2.DENY
    log.entries[9] = audit_pb2.SignedAccessRecord(
        record=changed.SerializeToString(deterministic=True), signature=victim.signature
    )
    report = verify_log(log, trust(keys), workers=2)
    assert report.signatures_checked == 20
    assert ("invalid_record_signature", 9) in {(f.code, f.index) for f in report.errors}
