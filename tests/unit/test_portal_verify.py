"""The "verified" mark comes from real checks: log signature, k-of-n cosignatures, inclusion
proof, recorder signature and the citizen's opening. Each check, broken alone, removes it."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cdx import errors, merkle, note, tiles
from cdx.v1 import audit_pb2
from portal import backends as b
from portal.monitor import LogMonitor
from portal.verify import LogTrust, Status, check_checkpoint, check_record, proof_from_tiles
from tests.unit.portal_fakes import ALICE, BOB, ORIGIN, VSS, World


@pytest.fixture
def world() -> World:
    w = World()
    w.record(ALICE)
    w.record(BOB, decision="DENY", reason="consent_revoked", basis="CONSENT")
    w.record(ALICE, client=VSS, sides=("PROVIDER",))
    w.publish()
    return w


def _check(w: World, index: int, **kw: object) -> object:
    trust = LogTrust.from_conf(w.conf)
    cp = check_checkpoint(w.checkpoint_note, trust)
    leaf = w.leaves[index]
    proof = b.InclusionProof(index, cp.size, tuple(merkle.inclusion_proof(w.tree, index, cp.size)))
    entry = kw.pop("entry", b.LogEntry(index, leaf.data))
    opening = kw.pop("opening", b.RecordOpening(leaf.record.record_id, leaf.subject, leaf.salt))
    return check_record(
        entry,
        kw.pop("proof", proof),
        kw.pop("checkpoint", cp),
        trust,  # type: ignore[arg-type]
        opening=opening,
        subject=kw.pop("subject", leaf.subject),
    )  # type: ignore[arg-type]


def test_genuine_entry_is_verified(world: World) -> None:
    checked = _check(world, 0)
    assert checked.status == Status.VERIFIED and checked.problem == ""  # type: ignore[attr-defined]
    assert checked.signature_ok and checked.included and checked.subject_ok  # type: ignore[attr-defined]


def _tiles_of(w: World, size: int) -> dict[tiles.Tile, bytes]:
    out = {}
    for tile in tiles.tree_tiles(size):
        span = 1 << (8 * tile.level)
        first = tile.first * span
        out[tile] = b"".join(
            w.tree.subtree_hash(first + i * span, first + (i + 1) * span) for i in range(tile.width)
        )
    return out


def test_a_proof_computed_from_tiles_verifies_and_a_bad_tile_fails(world: World) -> None:
    size = world.tree.size
    served = _tiles_of(world, size)
    checked = _check(world, 2, proof=proof_from_tiles(served, 2, size))
    assert checked.status == Status.VERIFIED  # type: ignore[attr-defined]
    (leaf_tile,) = served
    bad = {leaf_tile: bytes(len(served[leaf_tile]))}  # a tile server lying about the hashes
    checked = _check(world, 2, proof=proof_from_tiles(bad, 2, size))
    assert checked.status == Status.FAILED  # type: ignore[attr-defined]
    with pytest.raises(errors.ProofError):
        proof_from_tiles({}, 2, size)


def test_cosignatures_count_only_registered_witnesses(world: World) -> None:
    trust = LogTrust.from_conf(world.conf)
    cp = check_checkpoint(world.checkpoint_note, trust)
    assert sorted(cp.witnesses) == sorted(world.witness) and cp.quorum_met
    rogue = note.CosignatureSigner("VN:GOV:BCA:ss1", Ed25519PrivateKey.generate())
    text = note.Checkpoint(ORIGIN, world.tree.size, world.tree.root()).to_text()
    signed = world.log_signer.sign(text) + rogue.cosign(text, 1)
    cp = check_checkpoint(signed, trust)  # an unknown key id is ignored, not counted
    assert cp.witnesses == () and not cp.quorum_met


def test_below_quorum_is_pending_not_verified(world: World) -> None:
    world.publish(cosigners=["VN:GOV:BCA:ss1"])
    checked = _check(world, 0)
    assert checked.status == Status.PENDING  # type: ignore[attr-defined]
    assert checked.problem == "awaiting_cosignatures"  # type: ignore[attr-defined]


def test_entry_after_the_checkpoint_is_pending(world: World) -> None:
    world.record(ALICE)
    trust = LogTrust.from_conf(world.conf)
    cp = check_checkpoint(world.checkpoint_note, trust)
    leaf = world.leaves[-1]
    checked = check_record(b.LogEntry(len(world.leaves) - 1, leaf.data), None, cp, trust)
    assert (checked.status, checked.problem) == (Status.PENDING, "not_in_checkpoint")


def test_tampered_record_fails(world: World) -> None:
    signed = audit_pb2.SignedAccessRecord.FromString(world.leaves[0].data)
    record = audit_pb2.AccessRecord.FromString(signed.record)
    record.purpose = "TAX_ASSESSMENT"
    signed.record = record.SerializeToString()
    checked = _check(world, 0, entry=b.LogEntry(0, signed.SerializeToString()))
    assert checked.status == Status.FAILED  # type: ignore[attr-defined]
    assert checked.problem == "invalid_signature"  # type: ignore[attr-defined]


def test_wrong_inclusion_proof_fails(world: World) -> None:
    size = world.checkpoint_size
    bad = b.InclusionProof(0, size, tuple(merkle.inclusion_proof(world.tree, 1, size)))
    checked = _check(world, 0, proof=bad)
    assert (checked.status, checked.problem) == (Status.FAILED, "invalid_proof")  # type: ignore[attr-defined]
    other = b.InclusionProof(0, size - 1, tuple(merkle.inclusion_proof(world.tree, 0, size - 1)))
    assert _check(world, 0, proof=other).problem == "proof_mismatch"  # type: ignore[attr-defined]


def test_opening_for_another_citizen_fails(world: World) -> None:
    checked = _check(world, 0, subject=BOB)
    assert (checked.status, checked.problem) == (Status.FAILED, "subject_mismatch")  # type: ignore[attr-defined]
    leaf = world.leaves[0]
    wrong_salt = b.RecordOpening(leaf.record.record_id, ALICE, b"\x00" * 32)
    assert _check(world, 0, opening=wrong_salt).problem == "subject_mismatch"  # type: ignore[attr-defined]


def test_record_signed_by_a_server_not_party_to_the_exchange_fails(world: World) -> None:
    world.record(ALICE, sides=("PROVIDER",), recorder="VN:GOV:GDT:ss1")
    world.publish()
    checked = _check(world, len(world.leaves) - 1)
    assert (checked.status, checked.problem) == (Status.FAILED, "recorder_not_party")  # type: ignore[attr-defined]


@pytest.mark.parametrize("mutate", ["other_key", "other_origin", "garbage", "bad_signature"])
def test_checkpoint_not_from_the_log_is_refused(world: World, mutate: str) -> None:
    trust = LogTrust.from_conf(world.conf)
    text = note.Checkpoint(ORIGIN, world.tree.size, world.tree.root()).to_text()
    if mutate == "other_key":
        signed = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate()).sign(text)
    elif mutate == "other_origin":
        other = note.Checkpoint("other.example/log", world.tree.size, world.tree.root())
        signed = world.log_signer.sign(other.to_text())
        trust = dataclasses.replace(trust, origin=ORIGIN)
    elif mutate == "garbage":
        signed = "not a note"
    else:
        good = note.parse_note(world.log_signer.sign(text))
        sig = good.signatures[0]
        flipped = note.NoteSignature(
            sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
        )
        signed = note.Note(text, (flipped,)).to_text()
    with pytest.raises(errors.VerificationError if mutate != "garbage" else errors.MalformedError):
        check_checkpoint(signed, trust)


def test_malformed_leaf_is_reported_not_shown(world: World) -> None:
    with pytest.raises(errors.MalformedError):
        _check(world, 0, entry=b.LogEntry(0, b"\xff\xff not a record"))


class _Log:
    """A log the monitor watches; ``rewrite`` swaps its history for a different one."""

    def __init__(self, world: World) -> None:
        self.world = world

    def checkpoint(self, min_cosignatures: int = 0) -> b.SignedCheckpoint:
        # Every checkpoint of this world is cosigned by all witnesses (the quorum or more).
        return b.SignedCheckpoint(self.world.checkpoint_note, self.world.checkpoint_size)

    def consistency_proof(self, size1: int, size2: int) -> tuple[bytes, ...]:
        return tuple(merkle.consistency_proof(self.world.tree, size1, size2))


def test_monitor_proves_growth_and_alarms_on_a_rewrite(world: World) -> None:
    log = _Log(world)
    monitor = LogMonitor(log, world.clock)  # type: ignore[arg-type]
    trust = LogTrust.from_conf(world.conf)
    first = monitor.check(trust)
    assert first.problem == "" and first.consistent_from is None
    world.record(ALICE)
    world.publish()
    grown = monitor.check(trust)
    assert grown.problem == "" and grown.consistent_from == 5  # two exchanges + one side
    # Rewrite: replace the first leaf and re-sign a checkpoint of the same larger size.
    size_before = world.checkpoint_size
    world.leaves[0] = dataclasses.replace(world.leaves[0], data=world.leaves[1].data)
    world.tree = merkle.InMemoryTree(merkle.leaf_hash(leaf.data) for leaf in world.leaves)
    world.record(ALICE)
    world.publish()
    alarm = monitor.check(trust)
    assert alarm.problem == "checkpoint_inconsistent" and world.checkpoint_size > size_before
    assert monitor.check(trust).problem == "checkpoint_inconsistent"  # stays alarmed


def test_monitor_alarms_when_the_log_shrinks(world: World) -> None:
    log = _Log(world)
    monitor = LogMonitor(log, world.clock)  # type: ignore[arg-type]
    trust = LogTrust.from_conf(world.conf)
    monitor.check(trust)
    world.leaves.pop()
    world.tree = merkle.InMemoryTree(merkle.leaf_hash(leaf.data) for leaf in world.leaves)
    world.publish()
    assert monitor.check(trust).problem == "checkpoint_inconsistent"


def test_shredded_opening_still_verifies_but_is_not_linked(world: World) -> None:
    checked = _check(world, 0, opening=None)
    assert checked.status == Status.VERIFIED and checked.subject_ok is None  # type: ignore[attr-defined]
