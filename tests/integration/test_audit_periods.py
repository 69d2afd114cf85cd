"""Temporal sharding: a new period of the log starts with an entry anchoring the last
checkpoint of the old one, and verification walks from the newest period into the old one,
read from the old log's tiles alone (its database archived) or from its database."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.server import RunningAudit, anchor_new_period
from audit.verify import StoreSource, Trust, verify_chain
from audit.witness import Witness
from cdx import errors, note
from cdx.v1 import audit_pb2
from tests.integration.audit_support import CONSUMER, ORIGIN, AuditWorld
from tests.integration.periods_support import NEW_ORIGIN, two_periods

pytestmark = pytest.mark.xdist_group("audit-periods")


def test_verification_walks_from_the_new_period_into_the_old_one(tmp_path: Path) -> None:
    with two_periods(tmp_path) as p:
        inspector = p.world.client(p.world.inspector_tls)
        try:
            (first,) = inspector.entries(0, 1)
            anchor = audit_pb2.AccessRecord.FromString(first.record.record)
            assert (anchor.kind, anchor.client) == ("log_anchor", ORIGIN)
            assert anchor.previous_log_key == p.old_keys.log_verifier_key
            assert note.open_checkpoint(anchor.note, [p.old_keys.log_signer.verifier()])
            trust = Trust.from_conf(p.world.conf())
            from_tiles = verify_chain(inspector, trust, [p.old_source()], grace_ms=0)
            from_database = verify_chain(inspector, trust, [StoreSource(p.old_store())], grace_ms=0)
            alone = verify_chain(inspector, trust, grace_ms=0)
        finally:
            inspector.close()
    for chain in (from_tiles, from_database):
        assert chain.ok, [str(f) for _, r in chain.periods for f in r.errors] + [
            str(f) for f in chain.findings
        ]
        assert [origin for origin, _ in chain.periods] == [NEW_ORIGIN, ORIGIN]
        newest, old = (r for _, r in chain.periods)
        assert old.tree_size == p.anchored_size == 5
        assert newest.entries_checked == 1 + 1 + 2  # the anchor, the boundary's other side, one
        # The exchange recorded across the boundary is paired across it, not one-sided.
        assert p.boundary_message not in newest.unpaired | old.unpaired
        assert not [f for _, r in chain.periods for f in r.findings if f.code.startswith("one")]
    # Given only the new log, the chain is not walked, and it says so.
    assert [f.code for f in alone.findings] == ["previous_log_not_checked"]


def test_a_period_is_anchored_only_on_a_signed_complete_old_log(tmp_path: Path) -> None:
    with two_periods(tmp_path) as p:
        keys = p.world.keys  # the new log's: not empty any more
        with pytest.raises(errors.FailedPreconditionError, match="first entry"):
            anchor_new_period(
                p.old_store(),
                p.old_keys.log_signer.verifier(),
                ORIGIN,
                p.new.engine,
                keys,
            )
        with pytest.raises(errors.InvalidArgumentError):  # a period needs a new origin
            anchor_new_period(
                p.old_store(), p.old_keys.log_signer.verifier(), NEW_ORIGIN, p.new.engine, keys
            )
        stranger = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        with pytest.raises(errors.NoteSignatureError):  # not the old log's key
            p.new.service.anchor_previous_log(
                p.old_store().latest_checkpoint().note,  # type: ignore[union-attr]
                stranger.verifier(),
                ORIGIN,
            )


def test_witnesses_follow_a_new_period_through_its_anchor(tmp_path: Path) -> None:
    witnesses: list[Witness] = []

    def witness_the_old_log(world: AuditWorld, old: RunningAudit) -> None:
        old.checkpointer.publish_once()
        witness = Witness(
            CONSUMER,
            world.servers[CONSUMER].witness_key,
            world.client(CONSUMER),
            world.conf,
            tmp_path / "witness.json",
        )
        assert witness.poll_once().size == 5
        witnesses.append(witness)

    with two_periods(tmp_path / "log", before_switch=witness_the_old_log) as p:
        (witness,) = witnesses
        try:
            accepted = witness.poll_once()  # the new log, followed through its anchor
            assert witness.health() is None
            assert accepted.note.startswith(NEW_ORIGIN + "\n")
            latest = p.new.store.latest_checkpoint(1)
            assert latest is not None and latest.size == accepted.size
        finally:
            witness.stop()
