"""Someone with database access rewrites the log: verification and the witnesses catch it.

Each test runs a real audit service on its own database, lets it log and sign, then changes
the stored data directly (switching off the append-only triggers as a DBA could), and checks
that ``verify`` (over gRPC, as an inspector runs it) or a witness notices and names the change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audit import store
from audit.client import AuditClient
from audit.server import RunningAudit
from audit.verify import Trust, VerifyReport, verify_log
from audit.witness import Witness
from cdx import db, errors, merkle, note, rpc
from cdx.globalconf import to_ms
from cdx.v1 import audit_pb2
from tests.integration.audit_support import (
    CITIZEN_A,
    CITIZEN_B,
    CONSUMER,
    ORIGIN,
    PROVIDER,
    AuditWorld,
    bypass_triggers,
)


@dataclass
class Log:
    world: AuditWorld
    audit: RunningAudit
    engine: sa.Engine
    inspector: AuditClient
    witness: Witness

    def verify(self, **kw: object) -> VerifyReport:
        return verify_log(self.inspector, Trust.from_conf(self.world.conf()), **kw)  # type: ignore[arg-type]

    def ship(self, n: int, subject: str = CITIZEN_A, **kw: object) -> None:
        for _ in range(n):
            consumer_item, provider_item = self.world.exchange(subject, **kw)
            with self.world.client(CONSUMER) as c, self.world.client(PROVIDER) as p:
                assert not c.ship([consumer_item])[0].error_code
                assert not p.ship([provider_item])[0].error_code
        self.audit.checkpointer.publish_once()


@pytest.fixture
def log(db_url_factory: Callable[[str], tuple[str, str | None]], tmp_path: Path) -> Iterator[Log]:
    url, schema = db_url_factory("tamper")
    engine = db.create_engine(url, schema=schema)
    world = AuditWorld()
    audit = world.start(engine, checkpoint_interval=5.0)
    inspector = world.client(world.inspector_tls)
    witness = Witness(
        PROVIDER,
        world.servers[PROVIDER].witness_key,
        world.client(PROVIDER),
        world.conf,
        tmp_path / "witness.json",
    )
    logged = Log(world, audit, engine, inspector, witness)
    logged.ship(4)
    witness.poll_once()
    logged.ship(3)
    witness.poll_once()
    assert logged.verify().ok
    try:
        yield logged
    finally:
        inspector.close()
        audit.stop()


def errors_of(report: VerifyReport) -> set[tuple[str, int | None]]:
    return {(f.code, f.index) for f in report.errors}


def test_an_update_of_one_stored_record_is_detected_and_named(log: Log) -> None:
    with log.engine.connect() as conn:
        leaf = conn.execute(
            sa.select(store.leaves.c.leaf).where(store.leaves.c.idx == 5)
        ).scalar_one()
    signed = audit_pb2.SignedAccessRecord.FromString(leaf)
    record = audit_pb2.AccessRecord.FromString(signed.record)
    record.purpose = "TAX_ASSESSMENT"  # make the access look lawful under another purpose
    signed.record = record.SerializeToString(deterministic=True)
    bypass_triggers(log.engine, "audit_leaves")
    with log.engine.begin() as conn:
        conn.execute(
            store.leaves.update()
            .where(store.leaves.c.idx == 5)
            .values(leaf=signed.SerializeToString(deterministic=True), purpose="TAX_ASSESSMENT")
        )
    report = log.verify()
    assert not report.ok
    found = errors_of(report)
    assert ("invalid_record_signature", 5) in found
    assert ("entry_altered", 5) in found
    assert {f.record_id for f in report.errors if f.index == 5} == {record.record_id}


def test_a_truncated_log_is_detected(log: Log) -> None:
    size = log.audit.store.tree_state().size
    with log.engine.connect() as conn:
        hashes = [
            bytes(h)
            for (h,) in conn.execute(
                sa.select(store.leaves.c.leaf_hash).order_by(store.leaves.c.idx)
            )
        ]
    kept = 6
    frontier = merkle.Frontier().extend(hashes[:kept])[0]
    bypass_triggers(log.engine, "audit_leaves", "audit_tree_state")
    with log.engine.begin() as conn:
        conn.execute(store.leaves.delete().where(store.leaves.c.idx >= kept))
        conn.execute(
            store.tree_state.update().values(
                size=kept, root=frontier.root(), frontier=frontier.to_bytes(), version=999
            )
        )
    report = log.verify()
    assert ("log_truncated", None) in errors_of(report)
    assert size > kept


def test_truncation_hidden_by_deleting_checkpoints_is_caught_by_witnesses(log: Log) -> None:
    kept_checkpoint = log.witness.accepted
    assert kept_checkpoint is not None
    with log.engine.connect() as conn:
        hashes = [
            bytes(h)
            for (h,) in conn.execute(
                sa.select(store.leaves.c.leaf_hash).order_by(store.leaves.c.idx)
            )
        ]
    kept = 8  # exactly the first checkpoint's size: that one stays believable
    frontier = merkle.Frontier().extend(hashes[:kept])[0]
    bypass_triggers(
        log.engine, "audit_leaves", "audit_tree_state", "audit_checkpoints", "audit_cosignatures"
    )
    with log.engine.begin() as conn:
        conn.execute(store.leaves.delete().where(store.leaves.c.idx >= kept))
        conn.execute(store.checkpoints.delete().where(store.checkpoints.c.size > kept))
        conn.execute(store.cosignatures.delete().where(store.cosignatures.c.size > kept))
        conn.execute(
            store.tree_state.update().values(
                size=kept, root=frontier.root(), frontier=frontier.to_bytes(), version=999
            )
        )
    _time_passes(log)
    assert log.verify().ok  # the rewritten log is self-consistent ...
    with pytest.raises(errors.CheckpointInconsistentError):
        log.witness.poll_once()  # ... but the witness remembers a bigger tree
    assert log.witness.health() is not None
    report = log.verify(known_checkpoints=[kept_checkpoint.note])
    assert ("log_truncated", None) in errors_of(report)


def _replace_latest_checkpoint(log: Log, new_note: str) -> None:
    latest = log.audit.store.latest_checkpoint()
    assert latest is not None
    bypass_triggers(log.engine, "audit_checkpoints")
    with log.engine.begin() as conn:
        conn.execute(
            store.checkpoints.update()
            .where(store.checkpoints.c.size == latest.size)
            .values(note=new_note)
        )
    _time_passes(log)


def _time_passes(log: Log) -> None:
    """The log serves its newest checkpoint from memory for ``CHECKPOINT_CACHE_S``; a change
    made in the database underneath is served after that (here: at once)."""
    log.audit.service.forget_checkpoints()


def test_a_forked_checkpoint_is_detected(log: Log) -> None:
    real = log.witness.accepted
    assert real is not None
    # A checkpoint of the same size over another history, signed with the log's own key.
    forged_root = merkle.leaf_hash(b"another history")
    fork = log.world.keys.log_signer.sign(note.Checkpoint(ORIGIN, real.size, forged_root).to_text())
    _replace_latest_checkpoint(log, fork)
    with pytest.raises(errors.CheckpointInconsistentError):
        log.witness.poll_once()
    assert "different roots" in (log.witness.health() or "")
    report = log.verify(known_checkpoints=[real.note])
    found = {code for code, _ in errors_of(report)}
    assert {"forked_checkpoints", "checkpoint_root_mismatch"} <= found


def test_a_checkpoint_signed_by_another_key_is_detected(log: Log) -> None:
    latest = log.audit.store.latest_checkpoint()
    assert latest is not None
    impostor = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    _replace_latest_checkpoint(log, impostor.sign(note.parse_note(latest.note).text))
    with pytest.raises(errors.CheckpointInconsistentError):
        log.witness.poll_once()
    assert ("invalid_checkpoint_signature", None) in errors_of(log.verify())


def test_the_checkpointer_will_not_sign_a_rewritten_history(log: Log) -> None:
    # The DBA rewrites an entry and recomputes every node and the tree state, but has no log
    # key: the service itself must refuse to sign the result.
    with log.engine.connect() as conn:
        rows = conn.execute(
            sa.select(store.leaves.c.idx, store.leaves.c.leaf_hash).order_by(store.leaves.c.idx)
        ).all()
    hashes = [bytes(r.leaf_hash) for r in rows]
    hashes[2] = merkle.leaf_hash(b"rewritten")
    tree = merkle.InMemoryTree()
    nodes = [n for h in hashes for n in tree.append(h) if n.level >= 1]
    frontier = merkle.Frontier().extend(hashes)[0]
    bypass_triggers(log.engine, "audit_leaves", "audit_nodes", "audit_tree_state")
    with log.engine.begin() as conn:
        conn.execute(
            store.leaves.update().where(store.leaves.c.idx == 2).values(leaf_hash=hashes[2])
        )
        conn.execute(store.nodes.delete())
        conn.execute(
            store.nodes.insert(),
            [{"level": n.level, "idx": n.index, "hash": n.hash} for n in nodes],
        )
        conn.execute(
            store.tree_state.update().values(
                root=frontier.root(), frontier=frontier.to_bytes(), version=999
            )
        )
    with pytest.raises(errors.CheckpointInconsistentError):
        log.ship(1)  # ship() publishes: the checkpointer must refuse
    assert log.audit.checkpointer.health() is not None
    channel = rpc.secure_channel(log.world.audit_address, log.world.inspector_tls)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    channel.close()
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    latest = log.audit.store.latest_checkpoint()
    assert latest is not None and latest.size == len(hashes)  # nothing newer was signed


def test_shredding_an_epoch_removes_its_openings_and_the_log_still_verifies(log: Log) -> None:
    old_ms = to_ms(datetime(2024, 1, 15, tzinfo=UTC))
    log.ship(2, CITIZEN_B, time_ms=old_ms)
    log.ship(1, CITIZEN_B)
    token = log.world.token(CITIZEN_B)
    with log.world.client(log.world.portal_tls) as portal:
        before = portal.citizen_history(token, 500)
        old = [e for e in before.entries if e.record.time_ms == old_ms]
        assert len(old) == 4 and all(e.opening.subject == CITIZEN_B for e in old)
        shredded = log.audit.service.shred_before(to_ms(datetime(2024, 3, 1, tzinfo=UTC)))
        assert shredded == ["2024-01"]
        after = portal.citizen_history(token, 500)
    assert not [e for e in after.entries if e.record.time_ms == old_ms]  # no longer linkable
    assert len(after.entries) == len(before.entries) - 4
    assert all(e.opening.subject == CITIZEN_B for e in after.entries)
    # The openings are still stored, but nothing can decrypt them any more.
    epochs = dict(log.audit.service.keyring.epochs())
    assert epochs["2024-01"] is True
    assert log.audit.service.keyring.epoch_keys_for_reading(["2024-01"]) == {}
    report = log.verify()
    assert report.ok, [str(f) for f in report.errors]
