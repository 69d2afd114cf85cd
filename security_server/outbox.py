"""The local outbox: every access record is durable here before data is released (DESIGN §6.4).

``Outbox.record`` returns only after the record's row committed (group commit, see
``groupcommit``). A background thread ships pending records in batches to the audit log
through an ``AuditShipper``, idempotently (the log deduplicates on record id), and marks what
the log accepted. What happens to the rest depends on why it did not ship:

- the log is unreachable, or refused an item for a reason of its own state (a *transient*
  code, ``security_server.refusals``): the item stays queued and is retried with exponential
  backoff. When the oldest queued record is older than the policy window, ``check_release``
  raises ``OutboxBacklogError`` and the server stops releasing data (fail closed, as X-Road
  does when timestamping fails);
- the log refused the item for good (a *permanent* code): it becomes a dead letter
  (``security_server.deadletters``), out of the queue, with an alarm, and the rest ships on.

Without a shipper, records stay in the outbox and the window still applies. Every outcome is
reported to the audit log's ``Dependency`` (health, and one log line per change of state).

Openings (salts and the subject id) are AES-256-GCM encrypted at rest under a key derived from
the server's HPKE key, bound to their record id, and erased once the log has accepted them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from sqlalchemy.engine import Engine

from cdx import crypto, errors, telemetry
from cdx.clock import Clock, utcnow
from cdx.dependencies import Dependency
from cdx.globalconf import to_ms
from cdx.v1 import audit_pb2, common_pb2
from security_server import deadletters, refusals
from security_server.groupcommit import GroupCommitter
from security_server.replay import Claim, claim_rows
from security_server.store import fast_insert
from security_server.store import outbox as outbox_table

log = logging.getLogger(__name__)

__all__ = ["AuditShipper", "Outbox", "OutboxSummary", "summary"]

DEFAULT_WINDOW = timedelta(minutes=5)
_OPENING_AAD = b"cdx/outbox-opening/v1\n"


@runtime_checkable
class AuditShipper(Protocol):
    """Sends a batch of outbox items to the central audit log (the audit component implements
    it over ``AuditLog.AppendBatch``).

    Returns one ``AppendResult`` per item, in order: an empty ``error_code`` (new or
    ``duplicate``) means the log holds the record; a non-empty one means it refused that item
    (retried, or a dead letter when the code is permanent: ``security_server.refusals``).

    Raises:
        UnavailableError: (or any ``CdxError``) the log is unreachable; the batch is retried.
    """

    def ship(self, items: Sequence[audit_pb2.OutboxItem]) -> Sequence[audit_pb2.AppendResult]: ...


class Outbox:
    """Durable queue of signed access records awaiting shipment to the audit log."""

    def __init__(
        self,
        engine: Engine,
        committer: GroupCommitter,
        *,
        opening_key: bytes,
        window: timedelta = DEFAULT_WINDOW,
        shipper: AuditShipper | None = None,
        batch_size: int = 500,
        linger: float = 0.05,
        max_backoff: float = 5.0,
        retention: timedelta = timedelta(days=30),
        clock: Clock = utcnow,
        dependency: Dependency | None = None,
    ) -> None:
        if len(opening_key) != crypto.AEAD_KEY_SIZE:
            raise errors.InvalidArgumentError("the outbox key is 32 bytes")
        self._engine = engine
        self._committer = committer
        self._key = opening_key
        self.window = window
        self.shipper = shipper
        self._batch_size = batch_size
        self._linger = linger
        self._max_backoff = max_backoff
        self._retention = retention
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._oldest_ms: int | None = None
        self._appended_min_ms: int | None = None
        self._last_prune_ms = 0
        self.shipped_total = 0
        self.ship_failures = 0
        #: The audit log as a dependency: told the outcome of every shipment.
        self.log = dependency or Dependency("audit log", "", clock=clock)
        committer.register("outbox_insert", _insert_rows)
        committer.register("outbox_shipped", _mark_shipped)
        committer.register("outbox_failed", _mark_failed)
        committer.register("outbox_dead", deadletters.move_rows)
        committer.register("outbox_prune", _prune)
        self._refresh_oldest()

    # --- writing ------------------------------------------------------------------------------

    def record(
        self, item: audit_pb2.OutboxItem, now: datetime, *, claim: Claim | None = None
    ) -> None:
        """Append one signed record with its opening; returns once the row is durable.

        ``claim`` (a reserved message id) is committed in the same transaction, so one durable
        commit burns the id and stores the decision.

        Raises:
            ReplayError: ``claim``'s id was committed before (by a replica); nothing stored.
            UnavailableError: the store could not commit (the caller must not release data).
        """
        record_id = item.opening.record_id
        row = {
            "record_id": record_id,
            "created_ms": to_ms(now),
            "signed_record": item.record.SerializeToString(),
            "sealed_opening": crypto.aead_seal(
                self._key, item.opening.SerializeToString(), _OPENING_AAD + record_id.encode()
            ),
        }
        with telemetry.stage("outbox.write"):
            stored = self._committer.run("outbox_insert", (row, claim))
        if not stored:
            raise errors.ReplayError()
        with self._lock:
            created = row["created_ms"]
            if self._oldest_ms is None or created < self._oldest_ms:
                self._oldest_ms = created
            if self._appended_min_ms is None or created < self._appended_min_ms:
                self._appended_min_ms = created
        if self.shipper is not None:
            self._wake.set()

    # --- state --------------------------------------------------------------------------------

    def depth(self) -> int:
        """Number of records queued for the audit log (dead letters are not queued)."""
        with self._engine.connect() as conn:
            stmt = sa.select(sa.func.count()).where(
                outbox_table.c.shipped_ms.is_(None), deadletters.not_dead()
            )
            return int(conn.execute(stmt).scalar_one())

    def dead_letter_count(self) -> int:
        """Records the audit log refused for good and nobody re-queued yet."""
        return deadletters.count(self._engine)

    def dead_letters(self, *, include_requeued: bool = False) -> list[deadletters.DeadLetter]:
        """The dead letters, oldest first (see ``security_server.deadletters``)."""
        return deadletters.list_dead_letters(self._engine, include_requeued=include_requeued)

    def requeue(self, record_id: str) -> None:
        """Put a dead letter back in the queue and wake the shipper.

        Raises:
            NotFoundError: no active dead letter has that record id.
        """
        deadletters.requeue(self._engine, record_id, to_ms(self._clock()))
        self._refresh_oldest()
        self._wake.set()

    def oldest_unshipped_age(self, now: datetime) -> timedelta | None:
        """Age of the oldest record that holds the backlog window: queued, or a dead letter of
        released data (``None`` when none)."""
        with self._lock:
            oldest = self._oldest_ms
        if oldest is None:
            return None
        return timedelta(milliseconds=max(0, to_ms(now) - oldest))

    def check_release(self, now: datetime) -> None:
        """Refuse data release while the backlog is older than the window.

        Raises:
            OutboxBacklogError: unshipped records are older than ``window``.
        """
        if self.window <= timedelta(0):
            return
        age = self.oldest_unshipped_age(now)
        if age is not None and age > self.window:
            raise errors.OutboxBacklogError()

    def pending(self, limit: int = 1000) -> list[audit_pb2.OutboxItem]:
        """Queued items in append order, openings decrypted (for shipping and inspection)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    outbox_table.c.record_id,
                    outbox_table.c.signed_record,
                    outbox_table.c.sealed_opening,
                )
                .where(outbox_table.c.shipped_ms.is_(None), deadletters.not_dead())
                .order_by(outbox_table.c.seq)
                .limit(limit)
            ).all()
        return [self._item(r.record_id, r.signed_record, r.sealed_opening) for r in rows]

    def get(self, record_id: str) -> audit_pb2.SignedAccessRecord | None:
        """The signed record with ``record_id``, shipped or not (``None`` if unknown)."""
        with self._engine.connect() as conn:
            raw = conn.execute(
                sa.select(outbox_table.c.signed_record).where(outbox_table.c.record_id == record_id)
            ).scalar_one_or_none()
        return None if raw is None else audit_pb2.SignedAccessRecord.FromString(raw)

    def records(self, *, after_seq: int = 0, limit: int = 1000) -> list[audit_pb2.AccessRecord]:
        """Records in append order (shipped or not), decoded, for inspection and tests.

        The bytes are this server's own, read from its own database; use
        ``cdx.records.verify_access_record`` on ``get()`` to check a signature.
        """
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(outbox_table.c.signed_record)
                .where(outbox_table.c.seq > after_seq)
                .order_by(outbox_table.c.seq)
                .limit(limit)
            ).all()
        out: list[audit_pb2.AccessRecord] = []
        for (raw,) in rows:
            signed = audit_pb2.SignedAccessRecord.FromString(raw)
            out.append(audit_pb2.AccessRecord.FromString(signed.record))
        return out

    def last_seq(self) -> int:
        """The sequence number of the newest record (0 when empty)."""
        with self._engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.max(outbox_table.c.seq))).scalar_one_or_none()
        return int(value or 0)

    def count(self) -> int:
        """Every record in the outbox, shipped or not."""
        with self._engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar_one()
            )

    def _item(self, record_id: str, signed: bytes, sealed: bytes | None) -> audit_pb2.OutboxItem:
        item = audit_pb2.OutboxItem(record=audit_pb2.SignedAccessRecord.FromString(signed))
        if sealed is not None:
            plain = crypto.aead_open(self._key, sealed, _OPENING_AAD + record_id.encode())
            try:
                item.opening.ParseFromString(plain)
            except DecodeError as exc:  # pragma: no cover - authenticated, so only by a bug
                raise errors.InternalError("an outbox opening does not parse") from exc
        return item

    def _refresh_oldest(self) -> None:
        with self._lock:
            self._appended_min_ms = None
        unshipped = outbox_table.c.shipped_ms.is_(None)
        oldest_of = sa.func.min(outbox_table.c.created_ms)
        with self._engine.connect() as conn:
            queued = conn.execute(
                sa.select(oldest_of).where(unshipped, deadletters.not_dead())
            ).scalar_one_or_none()
            held = conn.execute(
                sa.select(oldest_of).where(unshipped, deadletters.held_released())
            ).scalar_one_or_none()
        with self._lock:
            candidates = [v for v in (queued, held, self._appended_min_ms) if v is not None]
            self._oldest_ms = min(candidates) if candidates else None

    # --- shipping -----------------------------------------------------------------------------

    def ship_once(self) -> int:
        """Ship one batch now; returns how many records the log accepted.

        Raises:
            CdxError: the shipper failed (nothing was marked shipped).
        """
        if self.shipper is None:
            return 0
        items = self.pending(self._batch_size)
        if not items:
            self._refresh_oldest()
            return 0
        try:
            with telemetry.stage("outbox.ship"):
                results = list(self.shipper.ship(items))
        except errors.CdxError as exc:
            self._ship_failed(exc.code)
            raise
        except Exception as exc:
            self._ship_failed(errors.UnavailableError.code)
            raise errors.UnavailableError("the audit shipper failed") from exc
        if len(results) != len(items):
            self._ship_failed(errors.UnavailableError.code)
            raise errors.UnavailableError("the audit log answered a different number of items")
        now_ms = to_ms(self._clock())
        accepted: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        for item, result in zip(items, results):
            rid = item.opening.record_id or _record_id(item)
            code = "mismatched_result" if result.record_id not in ("", rid) else result.error_code
            if not code:
                accepted.append({"rid": rid, "at": now_ms, "idx": int(result.index)})
            elif refusals.permanent(code):
                dead.append({"rid": rid, "at": now_ms, "code": code[:64], "released": _ok(item)})
            else:
                refused.append({"rid": rid, "err": code[:64]})
        if accepted:
            self._committer.run("outbox_shipped", accepted)
        if dead:
            self._committer.run("outbox_dead", dead)
            for row in dead:  # record ids and codes only: an operator's alarm, no personal data
                log.error(
                    "audit log refused record %s for good (%s): moved to the dead letters",
                    row["rid"],
                    row["code"],
                )
        if refused:
            self._committer.run("outbox_failed", refused)
        self.shipped_total += len(accepted)
        self._refresh_oldest()
        if refused:
            # The log answers but will not take these records now: a failing dependency.
            self._ship_failed(refused[0]["err"])
            raise errors.UnavailableError("the audit log refused some records for now")
        self.log.succeeded()
        return len(accepted)

    def _ship_failed(self, code: str) -> None:
        self.ship_failures += 1
        self.log.failed(code)

    def start(self) -> None:
        """Start the shipping thread (no-op without a shipper)."""
        if self.shipper is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._ship_loop, name="cdx-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the shipping thread (pending records stay durable for the next start)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _ship_loop(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            if backoff:
                self._stopping.wait(backoff * (0.5 + random.random() / 2))
            else:
                self._wake.wait(1.0)
                if self._linger:
                    self._stopping.wait(self._linger)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                while self.ship_once() >= self._batch_size and not self._stopping.is_set():
                    pass
                backoff = 0.0
                self._maybe_prune()
            except errors.CdxError as exc:
                # The audit log's Dependency logged the failure once, naming the peer.
                backoff = min(self._max_backoff, max(0.1, backoff * 2))
                log.debug("shipping access records failed (%s); retrying", exc.code)
            except Exception:
                backoff = min(self._max_backoff, max(0.1, backoff * 2))
                log.exception("shipping access records failed; retrying")

    def _maybe_prune(self) -> None:
        now_ms = to_ms(self._clock())
        if now_ms - self._last_prune_ms < 3_600_000 or self._retention <= timedelta(0):
            return
        self._last_prune_ms = now_ms
        cutoff = now_ms - int(self._retention.total_seconds() * 1000)
        self._committer.run("outbox_prune", cutoff)


@dataclass(frozen=True)
class OutboxSummary:
    """What an operator's tool shows of an outbox (``summary``)."""

    records: int
    queued: int
    oldest_queued_ms: int | None
    dead_letters: int


def summary(engine: Engine) -> OutboxSummary:
    """Counts of an outbox read straight from its database (for ``status`` commands, which
    run beside the server).

    Raises:
        UnavailableError: the database cannot be read (or predates dead letters).
    """
    queued_where = (outbox_table.c.shipped_ms.is_(None), deadletters.not_dead())
    try:
        with engine.connect() as conn:
            queued, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(outbox_table.c.created_ms)).where(
                    *queued_where
                )
            ).one()
            total = conn.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar_one()
    except sa.exc.SQLAlchemyError as exc:
        raise errors.UnavailableError("the server database cannot be read") from exc
    return OutboxSummary(
        int(total), int(queued), None if oldest is None else int(oldest), deadletters.count(engine)
    )


def _record_id(item: audit_pb2.OutboxItem) -> str:
    record_id: str = audit_pb2.AccessRecord.FromString(item.record.record).record_id
    return record_id


def _ok(item: audit_pb2.OutboxItem) -> bool:
    """Whether ``item`` records released data (an ALLOW)."""
    try:
        record = audit_pb2.AccessRecord.FromString(item.record.record)
    except DecodeError:  # our own bytes; if they do not parse, assume the worst
        return True
    return bool(record.decision == common_pb2.ALLOW)


# --- batch handlers (run on the group-commit writer thread) -----------------------------------


def _insert_rows(
    conn: sa.Connection, payloads: Sequence[tuple[dict[str, Any], Claim | None]]
) -> list[bool]:
    fresh = claim_rows(conn, [claim for _, claim in payloads])
    fast_insert(conn, outbox_table, [row for (row, _), ok in zip(payloads, fresh) if ok])
    return fresh


def _mark_shipped(conn: sa.Connection, batches: Sequence[list[dict[str, Any]]]) -> list[None]:
    rows = [row for batch in batches for row in batch]
    conn.execute(
        sa.update(outbox_table)
        .where(outbox_table.c.record_id == sa.bindparam("rid"))
        .values(
            shipped_ms=sa.bindparam("at"),
            log_index=sa.bindparam("idx"),
            sealed_opening=None,
            last_error=None,
        ),
        rows,
    )
    return [None] * len(batches)


def _mark_failed(conn: sa.Connection, batches: Sequence[list[dict[str, Any]]]) -> list[None]:
    rows = [row for batch in batches for row in batch]
    conn.execute(
        sa.update(outbox_table)
        .where(outbox_table.c.record_id == sa.bindparam("rid"))
        .values(attempts=outbox_table.c.attempts + 1, last_error=sa.bindparam("err")),
        rows,
    )
    return [None] * len(batches)


def _prune(conn: sa.Connection, cutoffs: Sequence[int]) -> list[int]:
    cutoff = min(cutoffs)
    result = conn.execute(
        sa.delete(outbox_table).where(
            outbox_table.c.shipped_ms.is_not(None), outbox_table.c.shipped_ms < cutoff
        )
    )
    return [int(result.rowcount or 0)] * len(cutoffs)
