"""Attacks on temporal sharding (a new period of the log anchored in the old one's last
checkpoint): whoever still controls the old log, or the log's own service, must not be able to
hide entries between the periods or rewrite the closed period without verification noticing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from audit import store
from audit.server import RunningAudit
from audit.verify import ChainReport, StoreSource, Trust, verify_chain
from audit.witness import Witness
from cdx import errors, records
from cdx.v1 import audit_pb2
from tests.integration.audit_support import CONSUMER, AuditWorld, bypass_triggers
from tests.integration.periods_support import PROVIDER, Periods, ship, two_periods

pytestmark = pytest.mark.xdist_group("audit-periods")


def _chain(p: Periods, *, from_database: bool = False) -> ChainReport:
    inspector = p.world.client(p.world.inspector_tls)
    try:
        old = StoreSource(p.old_store()) if from_database else p.old_source()
        return verify_chain(inspector, Trust.from_conf(p.world.conf()), [old], grace_ms=0)
    finally:
        inspector.close()


def _codes(chain: ChainReport) -> set[str]:
    found = {f.code for f in chain.findings if f.severity == "error"}
    return found | {f.code for _, r in chain.periods for f in r.errors}


def test_entries_appended_to_the_old_log_after_its_anchor_are_caught(tmp_path: Path) -> None:
    """The old log keeps accepting records after the new period anchored its last checkpoint:
    they would be in no period anyone verifies."""

    def keep_appending(world: AuditWorld, old: RunningAudit) -> None:
        ship(world, world.exchange())
        old.checkpointer.publish_once()

    with two_periods(tmp_path, before_switch=keep_appending) as p:
        for chain in (_chain(p), _chain(p, from_database=True)):
            assert not chain.ok
            assert "entries_after_anchor" in _codes(chain)


def test_a_closed_period_rewritten_after_the_anchor_is_caught(tmp_path: Path) -> None:
    """A DBA with full rights alters an entry of the archived old log."""
    with two_periods(tmp_path) as p:
        bypass_triggers(p.old_engine, "audit_leaves")
        with p.old_engine.begin() as conn:
            leaf = conn.execute(
                sa.select(store.leaves.c.leaf).where(store.leaves.c.idx == 1)
            ).scalar_one()
            signed = audit_pb2.SignedAccessRecord.FromString(leaf)
            record = audit_pb2.AccessRecord.FromString(signed.record)
            record.purpose = "SOMETHING_ELSE"
            signed.record = record.SerializeToString()
            conn.execute(
                store.leaves.update()
                .where(store.leaves.c.idx == 1)
                .values(leaf=signed.SerializeToString(deterministic=True))
            )
        chain = _chain(p, from_database=True)
    assert not chain.ok
    assert {"checkpoint_root_mismatch", "invalid_record_signature"} <= _codes(chain)


def test_an_anchor_in_the_middle_of_a_log_is_an_error(tmp_path: Path) -> None:
    """Only a period's first entry may claim a previous log; one appended later (a service
    with its key but no rule) would let a log redirect verifiers elsewhere."""
    with two_periods(tmp_path) as p:
        with p.world.client(p.world.inspector_tls) as inspector:
            (first,) = inspector.entries(0, 1)
        late = audit_pb2.AccessRecord.FromString(first.record.record)
        late.record_id = "01900000-0000-7000-8000-00000000a11c"
        p.new.service._append_own(late)  # what anchor_previous_log refuses to do
        p.new.checkpointer.publish_once()
        chain = _chain(p)
    assert "misplaced_anchor" in _codes(chain)


def test_an_anchor_not_signed_by_the_audit_service_breaks_the_chain(tmp_path: Path) -> None:
    """A first entry that claims to anchor a previous log is checked under the audit service
    key of global configuration, whatever the log says."""
    with two_periods(tmp_path) as p:
        world = p.world
        forged = world.servers[PROVIDER].signer  # a security server's key, not the log's
        with world.client(world.inspector_tls) as inspector:
            (first,) = inspector.entries(0, 1)
        anchor = audit_pb2.AccessRecord.FromString(first.record.record)
        resigned = records.sign_access_record(anchor, forged)
        bypass_triggers(p.new.engine, "audit_leaves")
        with p.new.engine.begin() as conn:
            conn.execute(
                store.leaves.update()
                .where(store.leaves.c.idx == 0)
                .values(leaf=resigned.SerializeToString(deterministic=True))
            )
        chain = _chain(p)
    assert not chain.ok
    assert "invalid_record_signature" in _codes(chain)
    assert len(chain.periods) == 1  # the forged link is not followed


def test_switching_to_a_log_that_anchors_nothing_alarms_the_witnesses(tmp_path: Path) -> None:
    """Global configuration names a new origin whose log does not start from the checkpoint
    the witnesses accepted: a way to make them forget what they cosigned (a fork)."""
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
        witness.poll_once()
        witnesses.append(witness)

    with two_periods(tmp_path / "log", before_switch=witness_the_old_log, anchor=False) as p:
        (witness,) = witnesses
        try:
            with pytest.raises(errors.CheckpointInconsistentError):
                witness.poll_once()
            assert witness.health() is not None
            assert p.new.store.latest_checkpoint(1) is None  # nothing cosigned
        finally:
            witness.stop()
