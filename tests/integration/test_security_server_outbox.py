"""The outbox, replay cache and group commit over a real database (SQLite; PostgreSQL when
``CDX_TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cdx import crypto, db, errors
from cdx.v1 import audit_pb2, common_pb2
from security_server.groupcommit import GroupCommitter
from security_server.outbox import Outbox
from security_server.records import Decision, build_record, new_id, sign_item
from security_server.replay import ReplayGuard
from security_server.store import outbox as outbox_table

SUBJECT = "079090000001"
T0 = datetime(2025, 11, 28, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Shipper:
    def __init__(self) -> None:
        self.reachable = True
        self.refuse: set[str] = set()
        self.refuse_for_good: set[str] = set()
        self.log: dict[str, audit_pb2.OutboxItem] = {}
        self.calls = 0

    def ship(self, items: Sequence[audit_pb2.OutboxItem]) -> list[audit_pb2.AppendResult]:
        self.calls += 1
        if not self.reachable:
            raise errors.UnavailableError("down")
        out = []
        for item in items:
            rid = item.opening.record_id
            if rid in self.refuse:
                out.append(audit_pb2.AppendResult(record_id=rid, error_code="unknown_key"))
                continue
            if rid in self.refuse_for_good:
                code = "verification_failed"
                out.append(audit_pb2.AppendResult(record_id=rid, error_code=code))
                continue
            out.append(
                audit_pb2.AppendResult(
                    record_id=rid, index=len(self.log), duplicate=rid in self.log
                )
            )
            self.log[rid] = item
        return out


class Store:
    def __init__(self, url: str, schema: str | None, clock: Clock) -> None:
        self.url, self.schema, self.clock = url, schema, clock
        self.key = crypto.new_salt()
        self.signer = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
        self.engine: Engine = db.create_engine(url, schema=schema)
        db.migrate(self.engine, "security_server")
        self.parts: list[Any] = []

    def open(self, shipper: Shipper | None = None, window: timedelta = timedelta(minutes=5),
             ) -> tuple[Outbox, ReplayGuard, GroupCommitter]:  # fmt: skip
        committer = GroupCommitter(self.engine)
        outbox = Outbox(
            self.engine, committer, opening_key=self.key, window=window, shipper=shipper,
            batch_size=50, linger=0.0, max_backoff=0.2, clock=self.clock,
        )  # fmt: skip
        replay = ReplayGuard(self.engine, committer, self.clock())
        self.parts.append((outbox, committer))
        return outbox, replay, committer

    def item(self, allowed: bool = True) -> audit_pb2.OutboxItem:
        d = Decision(role=common_pb2.PROVIDER, message_id=new_id(), client="VN:GOV:VSS:benefits",
                     subject=SUBJECT, request_value=b"req", response_value=b"resp", verified=True)  # fmt: skip
        record, opening = build_record(
            d, recorder="VN:GOV:BCA:ss1", allowed=allowed, reason_code="x", now=self.clock()
        )
        return sign_item(record, opening, self.signer)

    def close(self) -> None:
        for outbox, committer in self.parts:
            outbox.stop()
            committer.close()
        self.engine.dispose()


@pytest.fixture
def store(db_url_factory: Callable[[str], tuple[str, str | None]]) -> Iterator[Store]:
    url, schema = db_url_factory("ss")
    s = Store(url, schema, Clock())
    yield s
    s.close()


def test_recorded_item_is_pending_with_its_opening(store: Store) -> None:
    outbox, _, _ = store.open()
    item = store.item()
    outbox.record(item, store.clock())
    (pending,) = outbox.pending()
    assert pending == item
    assert outbox.depth() == 1 and outbox.count() == 1


def test_opening_is_encrypted_at_rest(store: Store) -> None:
    outbox, _, _ = store.open()
    outbox.record(store.item(), store.clock())
    with store.engine.connect() as conn:
        raw = conn.execute(sa.select(outbox_table.c.sealed_opening)).scalar_one()
    assert SUBJECT.encode() not in raw
    other_key = Outbox.__new__(Outbox)
    other_key._key = crypto.new_salt()
    rid = outbox.pending()[0].opening.record_id
    with pytest.raises(errors.DecryptionError):
        other_key._item(rid, outbox.pending()[0].record.SerializeToString(), raw)


def test_shipping_marks_records_and_erases_openings(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper)
    items = [store.item() for _ in range(120)]
    for item in items:
        outbox.record(item, store.clock())
    shipped = 0
    while outbox.depth():
        shipped += outbox.ship_once()
    assert shipped == 120 and set(shipper.log) == {i.opening.record_id for i in items}
    assert outbox.oldest_unshipped_age(store.clock()) is None
    with store.engine.connect() as conn:
        openings = conn.execute(sa.select(outbox_table.c.sealed_opening)).scalars().all()
    assert openings and all(o is None for o in openings)
    # the signed records stay for local evidence
    assert outbox.get(items[0].opening.record_id) == items[0].record


def test_unreachable_log_keeps_everything(store: Store) -> None:
    shipper = Shipper()
    shipper.reachable = False
    outbox, _, _ = store.open(shipper)
    outbox.record(store.item(), store.clock())
    with pytest.raises(errors.UnavailableError):
        outbox.ship_once()
    assert outbox.depth() == 1 and outbox.ship_failures == 1


def test_refused_item_stays_pending_and_is_retried(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper)
    good, bad = store.item(), store.item()
    shipper.refuse.add(bad.opening.record_id)
    outbox.record(good, store.clock())
    outbox.record(bad, store.clock())
    with pytest.raises(errors.UnavailableError):
        outbox.ship_once()
    assert outbox.depth() == 1 and outbox.pending()[0] == bad
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(outbox_table.c.attempts, outbox_table.c.last_error).where(
                outbox_table.c.record_id == bad.opening.record_id
            )
        ).one()
    assert row.attempts == 1 and row.last_error == "unknown_key"
    shipper.refuse.clear()
    assert outbox.ship_once() == 1 and outbox.depth() == 0


def test_a_log_answering_the_wrong_number_of_items_ships_nothing(store: Store) -> None:
    class Short(Shipper):
        def ship(self, items: Sequence[audit_pb2.OutboxItem]) -> list[audit_pb2.AppendResult]:
            return super().ship(items)[:-1]

    outbox, _, _ = store.open(Short())
    for _ in range(3):
        outbox.record(store.item(), store.clock())
    with pytest.raises(errors.UnavailableError):
        outbox.ship_once()
    assert outbox.depth() == 3


def test_backlog_window_stops_release_and_shipping_reopens_it(store: Store) -> None:
    shipper = Shipper()
    shipper.reachable = False
    outbox, _, _ = store.open(shipper, window=timedelta(minutes=5))
    outbox.check_release(store.clock())  # empty outbox
    outbox.record(store.item(), store.clock())
    store.clock.now = T0 + timedelta(minutes=5)
    outbox.check_release(store.clock())  # exactly at the window: still fine
    store.clock.now = T0 + timedelta(minutes=5, seconds=1)
    with pytest.raises(errors.OutboxBacklogError):
        outbox.check_release(store.clock())
    shipper.reachable = True
    outbox.ship_once()
    outbox.check_release(store.clock())


def test_without_a_shipper_the_window_still_applies(store: Store) -> None:
    outbox, _, _ = store.open(None, window=timedelta(seconds=10))
    outbox.record(store.item(), store.clock())
    assert outbox.ship_once() == 0
    store.clock.now = T0 + timedelta(seconds=11)
    with pytest.raises(errors.OutboxBacklogError):
        outbox.check_release(store.clock())


def test_a_reopened_outbox_remembers_its_backlog(store: Store) -> None:
    outbox, _, committer = store.open(None, window=timedelta(seconds=10))
    items = [store.item() for _ in range(5)]
    for item in items:
        outbox.record(item, store.clock())
    committer.close()
    store.clock.now = T0 + timedelta(seconds=30)
    reopened, _, _ = store.open(None, window=timedelta(seconds=10))
    assert reopened.pending() == items
    assert reopened.oldest_unshipped_age(store.clock()) == timedelta(seconds=30)
    with pytest.raises(errors.OutboxBacklogError):
        reopened.check_release(store.clock())


def test_background_thread_ships_new_records(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper)
    outbox.start()
    for _ in range(10):
        outbox.record(store.item(), store.clock())
    deadline = time.monotonic() + 10
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outbox.depth() == 0 and len(shipper.log) == 10


def test_background_thread_retries_until_the_log_is_back(store: Store) -> None:
    shipper = Shipper()
    shipper.reachable = False
    outbox, _, _ = store.open(shipper)
    outbox.start()
    outbox.record(store.item(), store.clock())
    deadline = time.monotonic() + 5
    while shipper.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shipper.calls >= 2 and outbox.depth() == 1
    shipper.reachable = True
    deadline = time.monotonic() + 10
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outbox.depth() == 0


def test_concurrent_writers_share_commits(store: Store) -> None:
    outbox, _, committer = store.open()
    items = [store.item() for _ in range(400)]
    chunks = [items[i::16] for i in range(16)]
    errors_seen: list[BaseException] = []

    def write(chunk: list[audit_pb2.OutboxItem]) -> None:
        try:
            for item in chunk:
                outbox.record(item, store.clock())
        except BaseException as exc:  # pragma: no cover - reported below
            errors_seen.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors_seen
    assert outbox.count() == 400
    assert committer.batches < committer.jobs  # some commits carried several records


def test_claimed_message_id_is_burnt_with_its_record(store: Store) -> None:
    outbox, replay, _ = store.open()
    claim = replay.reserve("VN:GOV:VSS:ss1", "m-1", 10**13)
    with pytest.raises(errors.ReplayError):
        replay.reserve("VN:GOV:VSS:ss1", "m-1", 10**13)  # in flight
    outbox.record(store.item(), store.clock(), claim=claim)
    replay.settle(claim, committed=True)
    with pytest.raises(errors.ReplayError):
        replay.reserve("VN:GOV:VSS:ss1", "m-1", 10**13)
    replay.reserve("VN:GOV:GDT:ss1", "m-1", 10**13)  # ids are per consumer server


def test_id_burnt_by_a_replica_is_a_replay(store: Store) -> None:
    outbox_a, replay_a, _ = store.open()
    outbox_b, replay_b, _ = store.open()  # a second replica on the same database
    claim_a = replay_a.reserve("VN:GOV:VSS:ss1", "m-2", 10**13)
    claim_b = replay_b.reserve("VN:GOV:VSS:ss1", "m-2", 10**13)  # b has not seen it yet
    outbox_a.record(store.item(), store.clock(), claim=claim_a)
    item_b = store.item()
    with pytest.raises(errors.ReplayError):
        outbox_b.record(item_b, store.clock(), claim=claim_b)
    assert outbox_b.get(item_b.opening.record_id) is None  # nothing stored for the loser


def test_replay_cache_survives_a_restart_and_expires(store: Store) -> None:
    outbox, replay, committer = store.open()
    expires = int((T0 + timedelta(minutes=1)).timestamp() * 1000)
    claim = replay.reserve("VN:GOV:VSS:ss1", "m-3", expires)
    outbox.record(store.item(), store.clock(), claim=claim)
    committer.close()
    _, reopened, _ = store.open()
    with pytest.raises(errors.ReplayError):
        reopened.reserve("VN:GOV:VSS:ss1", "m-3", expires)
    assert reopened.purge(T0 + timedelta(minutes=2)) == 1
    reopened.reserve("VN:GOV:VSS:ss1", "m-3", expires)


def test_a_failing_job_does_not_fail_its_batch(store: Store) -> None:
    committer = GroupCommitter(store.engine)
    store.parts.append((Outbox(store.engine, committer, opening_key=store.key), committer))

    def handler(conn: sa.Connection, payloads: Sequence[str]) -> list[str]:
        if "bad" in payloads:
            raise RuntimeError("boom")
        return list(payloads)

    committer.register("t", handler)
    futures = [committer.submit("t", p) for p in ("a", "bad", "c")]
    assert futures[0].result(5) == "a" and futures[2].result(5) == "c"
    with pytest.raises(errors.UnavailableError):
        futures[1].result(5)


# --- dead letters ---------------------------------------------------------------------------


def test_a_record_refused_for_good_becomes_a_dead_letter_and_the_rest_ships(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper)
    good, poisoned, later = store.item(), store.item(allowed=False), store.item()
    shipper.refuse_for_good.add(poisoned.opening.record_id)
    for item in (good, poisoned, later):
        outbox.record(item, store.clock())
    assert outbox.ship_once() == 2  # no retry storm, no exception: the rest shipped
    assert set(shipper.log) == {good.opening.record_id, later.opening.record_id}
    assert outbox.depth() == 0 and outbox.pending() == []
    (dead,) = outbox.dead_letters()
    assert (dead.record_id, dead.code, dead.released) == (
        poisoned.opening.record_id,
        "verification_failed",
        False,
    )
    assert outbox.dead_letter_count() == 1
    assert outbox.get(poisoned.opening.record_id) == poisoned.record  # nothing deleted
    assert outbox.ship_once() == 0 and shipper.calls == 1  # not shipped again


def test_dead_letters_of_denials_do_not_hold_the_backlog_window(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper, window=timedelta(seconds=10))
    poisoned = store.item(allowed=False)
    shipper.refuse_for_good.add(poisoned.opening.record_id)
    outbox.record(poisoned, store.clock())
    outbox.ship_once()
    store.clock.now = T0 + timedelta(hours=1)
    outbox.record(store.item(), store.clock())
    outbox.check_release(store.clock())  # an hour on, release continues
    assert outbox.oldest_unshipped_age(store.clock()) == timedelta(0)


def test_a_dead_letter_of_released_data_still_holds_the_backlog_window(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper, window=timedelta(seconds=10))
    released = store.item(allowed=True)
    shipper.refuse_for_good.add(released.opening.record_id)
    outbox.record(released, store.clock())
    outbox.ship_once()
    (dead,) = outbox.dead_letters()
    assert dead.released and outbox.depth() == 0
    store.clock.now = T0 + timedelta(seconds=11)
    with pytest.raises(errors.OutboxBacklogError):
        outbox.check_release(store.clock())


def test_a_requeued_dead_letter_ships_once_the_log_takes_it(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper)
    poisoned = store.item(allowed=False)
    rid = poisoned.opening.record_id
    shipper.refuse_for_good.add(rid)
    outbox.record(poisoned, store.clock())
    outbox.ship_once()
    shipper.refuse_for_good.clear()  # the cause was fixed (at the log)
    store.clock.now = T0 + timedelta(minutes=1)
    outbox.requeue(rid)
    assert outbox.dead_letter_count() == 0 and outbox.pending() == [poisoned]
    assert outbox.ship_once() == 1 and rid in shipper.log
    (history,) = outbox.dead_letters(include_requeued=True)
    assert history.requeued_ms == int((T0 + timedelta(minutes=1)).timestamp() * 1000)
    with pytest.raises(errors.NotFoundError):
        outbox.requeue(rid)  # no longer a dead letter


def test_a_requeued_record_refused_again_is_a_dead_letter_again(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper)
    poisoned = store.item(allowed=False)
    rid = poisoned.opening.record_id
    shipper.refuse_for_good.add(rid)
    outbox.record(poisoned, store.clock())
    outbox.ship_once()
    outbox.requeue(rid)
    outbox.ship_once()
    assert [d.record_id for d in outbox.dead_letters()] == [rid]
    assert len(outbox.dead_letters(include_requeued=True)) == 2  # the history stays


@pytest.mark.parametrize("record_id", ["", "x" * 37, "no-such-record", "\u00e9t\u00e9"])
def test_requeue_refuses_what_is_not_a_dead_letter(store: Store, record_id: str) -> None:
    outbox, _, _ = store.open(Shipper())
    with pytest.raises((errors.NotFoundError, errors.InvalidArgumentError)):
        outbox.requeue(record_id)


def test_dead_letters_survive_a_restart(store: Store) -> None:
    shipper = Shipper()
    outbox, _, committer = store.open(shipper)
    poisoned = store.item(allowed=False)
    shipper.refuse_for_good.add(poisoned.opening.record_id)
    outbox.record(poisoned, store.clock())
    outbox.ship_once()
    committer.close()
    reopened, _, _ = store.open(shipper)
    assert [d.record_id for d in reopened.dead_letters()] == [poisoned.opening.record_id]
    assert reopened.pending() == [] and reopened.ship_once() == 0


def test_a_transient_refusal_is_not_a_dead_letter(store: Store) -> None:
    shipper = Shipper()
    outbox, _, _ = store.open(shipper)
    item = store.item()
    shipper.refuse.add(item.opening.record_id)  # unknown_key: the log's conf may lag
    outbox.record(item, store.clock())
    with pytest.raises(errors.UnavailableError):
        outbox.ship_once()
    assert outbox.dead_letters() == [] and outbox.depth() == 1
    assert outbox.log.problem() == "unknown_key"
