"""The audit store, sequencer and checkpointer on real SQLite files and PostgreSQL."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from audit import store
from audit.checkpointer import Checkpointer
from audit.sequencer import PreparedEntry, Sequencer
from audit.store import AuditStore
from cdx import db, errors, merkle, note
from tests.integration.audit_support import bypass_triggers

ORIGIN = "cdx.test/audit"


@pytest.fixture
def make_engine(
    db_url_factory: Callable[[str], tuple[str, str | None]],
) -> Iterator[Callable[[], Engine]]:
    """Engines on one fresh, migrated audit database (call it twice for two 'processes')."""
    url, schema = db_url_factory("audit")
    engines: list[Engine] = []

    def make() -> Engine:
        engine = db.create_engine(url, schema=schema)
        if not engines:
            db.migrate(engine, "audit")
        engines.append(engine)
        return engine

    yield make
    for e in engines:
        e.dispose()


def entry(i: int = 0, *, record_id: str | None = None, leaf: bytes | None = None) -> PreparedEntry:
    data = leaf or os.urandom(64)
    return PreparedEntry(
        record_id=record_id or str(uuid.uuid4()),
        leaf=data,
        leaf_hash=merkle.leaf_hash(data),
        recorder="VN:GOV:BCA:ss1",
        role=2,
        client="VN:GOV:VSS:benefits",
        service="VN:GOV:BCA:population/person/v1",
        purpose="SOCIAL_BENEFIT_ELIGIBILITY",
        decision=1,
        reason="ok",
        time_ms=1_700_000_000_000 + i,
        message_id=str(uuid.uuid4()),
        visibility=1,
        kind="access",
        epoch="2023-11",
    )


def leaf_hashes(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(store.leaves.c.idx, store.leaves.c.leaf_hash).order_by(store.leaves.c.idx)
        ).all()
    assert [r.idx for r in rows] == list(range(len(rows))), "leaf indexes must be contiguous"
    return [bytes(r.leaf_hash) for r in rows]


def test_appended_entries_get_contiguous_indexes_and_proofs_verify(
    make_engine: Callable[[], Engine],
) -> None:
    engine = make_engine()
    seq = Sequencer(engine).start()
    try:
        entries = [entry(i) for i in range(300)]
        results = []
        for start in range(0, 300, 37):
            results += seq.append(entries[start : start + 37])
    finally:
        seq.stop()
    assert [r.index for r in results] == list(range(300))
    audit = AuditStore(engine)
    hashes = leaf_hashes(engine)
    assert hashes == [e.leaf_hash for e in entries]
    state = audit.tree_state()
    assert (state.size, state.root) == (300, merkle.root(hashes))
    rng = random.Random(7)
    for size in (1, 2, 7, 64, 100, 255, 256, 300):
        root = merkle.root(hashes[:size])
        assert audit.root_at(size) == root
        for index in {0, size - 1, rng.randrange(size)}:
            leaf, proof = audit.inclusion_proof(index, size)
            merkle.verify_inclusion(leaf, index, size, proof, root)
        for size1 in {1, size // 2, size}:
            if size1:
                proof = audit.consistency_proof(size1, size)
                merkle.verify_consistency(size1, size, proof, merkle.root(hashes[:size1]), root)
    many = audit.inclusion_proofs(list(range(0, 300, 11)), 300)
    for index, (leaf, proof) in many.items():
        merkle.verify_inclusion(leaf, index, 300, proof, state.root)
    with pytest.raises(errors.InvalidArgumentError):
        audit.inclusion_proof(0, 301)  # beyond the committed tree


def test_append_is_idempotent_and_a_different_record_under_a_known_id_is_refused(
    make_engine: Callable[[], Engine],
) -> None:
    engine = make_engine()
    seq = Sequencer(engine).start()
    try:
        first = entry(1)
        (a,) = seq.append([first])
        again, twin = seq.append([first, entry(2, record_id=first.record_id)])
        (b,) = seq.append([entry(3)])
    finally:
        seq.stop()
    assert (a.index, a.duplicate) == (0, False)
    assert (again.index, again.duplicate, again.error_code) == (0, True, "")
    assert twin.error_code == errors.AlreadyExistsError.code
    assert b.index == 1
    assert AuditStore(engine).tree_state().size == 2


def test_two_sequencers_on_one_database_never_fork_the_log(
    make_engine: Callable[[], Engine],
) -> None:
    engines = [make_engine(), make_engine()]
    sequencers = [Sequencer(e).start() for e in engines]
    shared = [entry(i) for i in range(40)]  # shipped to both processes (an outbox retrying)
    appended: list[PreparedEntry] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work(seq: Sequencer, n: int) -> None:
        try:
            for i in range(25):
                mine = [entry(i), entry(i)]
                seq.append([*mine, shared[(n * 7 + i) % len(shared)]])
                with lock:
                    appended.extend(mine)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(sequencers[n % 2], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in sequencers:
        s.stop()
    assert not failures
    hashes = leaf_hashes(engines[0])
    used_shared = {shared[(n * 7 + i) % len(shared)].leaf_hash for n in range(8) for i in range(25)}
    assert len(hashes) == len(appended) + len(used_shared)  # nothing lost, nothing twice
    assert set(hashes) == {e.leaf_hash for e in appended} | used_shared
    state = AuditStore(engines[1]).tree_state()
    assert state.size == len(hashes) and state.root == merkle.root(hashes)


def test_a_stale_tree_state_cannot_be_swapped_in(make_engine: Callable[[], Engine]) -> None:
    engine = make_engine()
    with engine.connect() as conn:
        stale = store.read_tree_state(conn)
    seq = Sequencer(make_engine()).start()
    seq.append([entry(1)])
    seq.stop()
    frontier, _ = stale.frontier.extend([entry(2).leaf_hash])
    with db.writer(engine).begin() as conn:
        assert store.swap_tree_state(conn, stale, frontier, 0) is None  # the CAS loses
    assert AuditStore(engine).tree_state().size == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_leaves SET purpose = 'X'",
        "DELETE FROM audit_leaves",
        "UPDATE audit_nodes SET hash = hash",
        "DELETE FROM audit_nodes",
        "UPDATE audit_checkpoints SET note = 'x'",
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_openings",
        "UPDATE audit_tree_state SET size = 0, version = version + 1",
        "DELETE FROM audit_tree_state",
    ],
)
def test_audit_tables_refuse_updates_and_deletes(
    make_engine: Callable[[], Engine], statement: str
) -> None:
    engine = make_engine()
    seq = Sequencer(engine).start()
    keyed = entry(1)
    keyed.sealed_opening, keyed.subject_mac = b"sealed", bytes(32)
    seq.append([keyed, entry(2), entry(3)])
    seq.stop()
    audit = AuditStore(engine)
    Checkpointer(
        audit, note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate()), ORIGIN
    ).publish_once()
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert audit.tree_state().size == 3


def test_checkpoints_cover_committed_data_only(make_engine: Callable[[], Engine]) -> None:
    engine = make_engine()
    audit = AuditStore(engine)
    signer = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    cp = Checkpointer(audit, signer, ORIGIN)
    first = cp.publish_once()
    assert first is not None and first.size == 0 and first.root == merkle.EMPTY_ROOT
    assert cp.publish_once() is None  # nothing new, nothing signed
    seq = Sequencer(engine).start()
    entries = [entry(i) for i in range(10)]
    seq.append(entries)
    published = cp.publish_once()
    # A second process's checkpointer signs the same bytes and stores nothing new.
    other = Checkpointer(AuditStore(make_engine()), signer, ORIGIN)
    assert other.publish_once() is None
    seq.stop()
    assert published is not None and published.size == 10
    opened, _ = note.open_checkpoint(published.note, [signer.verifier()])
    assert opened.root_hash == merkle.root([e.leaf_hash for e in entries])
    assert [c.size for c in audit.list_checkpoints(-1, 10)] == [0, 10]


def test_the_checkpointer_publishes_on_its_own_every_interval(
    make_engine: Callable[[], Engine],
) -> None:
    engine = make_engine()
    audit = AuditStore(engine)
    cp = Checkpointer(
        audit, note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate()), ORIGIN, interval=0.2
    ).start()
    seq = Sequencer(engine).start()
    try:
        seq.append([entry(i) for i in range(5)])
        deadline = time.monotonic() + 5
        while (latest := audit.latest_checkpoint()) is None or latest.size < 5:
            assert time.monotonic() < deadline, "no checkpoint of the committed tree"
            time.sleep(0.05)
    finally:
        seq.stop()
        cp.stop()


def test_the_checkpointer_refuses_a_store_rewritten_underneath(
    make_engine: Callable[[], Engine],
) -> None:
    engine = make_engine()
    audit = AuditStore(engine)
    cp = Checkpointer(audit, note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate()), ORIGIN)
    seq = Sequencer(engine).start()
    seq.append([entry(i) for i in range(5)])
    assert cp.publish_once() is not None
    bypass_triggers(engine, "audit_nodes")
    with engine.begin() as conn:  # rewrite the subtree over leaves 0..3
        conn.execute(
            store.nodes.update()
            .where(store.nodes.c.level == 2, store.nodes.c.idx == 0)
            .values(hash=bytes(32))
        )
    seq.append([entry(i) for i in range(3)])
    seq.stop()
    with pytest.raises(errors.CheckpointInconsistentError):
        cp.publish_once()
    assert cp.health() is not None
    assert audit.latest_checkpoint().size == 5  # type: ignore[union-attr]


def test_a_sequencer_that_loses_the_race_rereads_and_retries(
    make_engine: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    with engine.connect() as conn:
        stale = store.read_tree_state(conn)
    winner = Sequencer(make_engine()).start()
    winner.append([entry(1), entry(2)])
    winner.stop()
    real_read = store.read_tree_state
    reads: list[int] = []

    def first_read_is_stale(conn: sa.Connection) -> store.TreeState:
        reads.append(1)
        return stale if len(reads) == 1 else real_read(conn)

    monkeypatch.setattr(store, "read_tree_state", first_read_is_stale)
    loser = Sequencer(engine).start()
    (result,) = loser.append([entry(3)])
    loser.stop()
    assert loser.conflicts == 1 and len(reads) == 2
    assert result.index == 2  # appended after the winner's entries, not over them
    hashes = leaf_hashes(engine)
    assert len(hashes) == 3
    assert AuditStore(engine).tree_state().root == merkle.root(hashes)
