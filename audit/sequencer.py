"""The sequencer: one thread assigns leaf indexes and commits them, with natural group commit.

Request threads hand prepared (already verified) entries to ``Sequencer.append`` and wait.
The sequencer thread takes everything queued, and in **one transaction**:

1. reads the tree state (size, frontier, version);
2. drops entries whose record id is already in the log (idempotent append) — the caller gets
   the existing index, or ``already_exists`` if the id holds a different record;
3. extends the frontier, then **compare-and-swaps** the tree state
   (``UPDATE ... WHERE size = :old AND version = :old``): a second sequencer on the same
   database that advanced the tree first makes this update match no row, so this one rolls back,
   re-reads and retries instead of forking the log (DESIGN §8, §9: a standby takes over the same
   way);
4. inserts the leaves, the new perfect-subtree nodes, the sealed openings, the subject-index rows
   and unseal markers.

Callers are released only after the commit: an index handed out is durable. While a commit
runs, new entries queue and form the next batch, so the batch size follows the load without any
timer (natural group commit).
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from audit import store
from audit.store import TreeState
from cdx import clock as cdx_clock
from cdx import db, errors, merkle, telemetry
from cdx.globalconf import to_ms
from cdx.v1 import audit_pb2

log = logging.getLogger(__name__)

#: Largest number of entries one group commit takes.
MAX_BATCH = 4096
_DB_RETRIES = 5


@dataclass(slots=True)
class PreparedEntry:
    """An entry checked and ready to sequence: the leaf bytes and everything stored beside it."""

    record_id: str
    leaf: bytes
    leaf_hash: bytes
    recorder: str
    role: int
    client: str
    service: str
    purpose: str
    decision: int
    reason: str
    time_ms: int
    message_id: str
    visibility: int
    kind: str
    epoch: str
    opening: audit_pb2.RecordOpening | None = None  # plaintext until sealed (``seal`` hook)
    sealed_opening: bytes | None = None
    subject_mac: bytes | None = None
    unseal_target: str | None = None
    copy_subjects_from: int | None = None


@dataclass(frozen=True, slots=True)
class Sequenced:
    """The outcome of one entry: its leaf index, or an error code."""

    record_id: str
    index: int
    duplicate: bool = False
    error_code: str = ""


class _Lost(Exception):
    """Another sequencer moved the tree state first."""


class _Pending:
    __slots__ = ("entries", "future")

    def __init__(self, entries: Sequence[PreparedEntry]) -> None:
        self.entries = entries
        self.future: Future[list[Sequenced]] = Future()


class Sequencer:
    """Owns the write path of one audit database (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: cdx_clock.Clock = cdx_clock.utcnow,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[TreeState], None] | None = None,
        seal: Callable[[Sequence[PreparedEntry]], None] | None = None,
        name: str = "cdx-audit-sequencer",
    ) -> None:
        self._seal = seal
        self._writer = db.writer(engine)
        self._conn: sa.Connection | None = None
        # The state this sequencer last committed or read. Using it saves a read per commit;
        # it cannot make the log fork: if another writer moved the tree, the compare-and-swap
        # fails and the state is read again.
        self._state: TreeState | None = None
        self._clock = clock
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.commits = 0
        self.conflicts = 0

    def start(self) -> Sequencer:
        """Start the sequencer thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def append(self, entries: Sequence[PreparedEntry], timeout: float = 30.0) -> list[Sequenced]:
        """Sequence ``entries`` and wait for the commit; one result per entry, in order.

        Raises:
            UnavailableError: the sequencer is stopped, the database failed, or the commit did
                not finish within ``timeout`` (the entries may still be sequenced: retry, the
                append is idempotent).
        """
        try:
            return self.submit(entries).result(timeout)
        except TimeoutError as exc:
            raise errors.UnavailableError("the audit log did not commit in time; retry") from exc

    def submit(self, entries: Sequence[PreparedEntry]) -> Future[list[Sequenced]]:
        """Queue ``entries`` for the next group commit; the future holds one result per entry
        (or the ``CdxError`` of a failed commit) once durable. An event loop awaits it with
        ``asyncio.wrap_future``.

        Raises:
            UnavailableError: the sequencer is shutting down.
        """
        pending = _Pending(entries)
        if not entries:
            pending.future.set_result([])
            return pending.future
        with self._cond:
            if self._stopping:
                raise errors.UnavailableError("the audit log is shutting down")
            self._queue.append(pending)
            self._cond.notify()
        return pending.future

    # --- the sequencer thread -----------------------------------------------------------------

    def _take(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            batch: list[_Pending] = []
            count = 0
            while self._queue and (
                not batch or count + len(self._queue[0].entries) <= self._max_batch
            ):
                pending = self._queue.popleft()
                batch.append(pending)
                count += len(pending.entries)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                self._drop_connection(failed=False)
                return
            entries = [e for p in batch for e in p.entries]
            try:
                if self._seal is not None:  # openings are encrypted here, off the request path
                    self._seal(entries)
                # One durable group commit: the stage's sample count is the commit count.
                with telemetry.stage("audit.sequence") as stage:
                    stage.set("entries", len(entries))
                    results = self._commit_with_retry(entries)
            except errors.CdxError as exc:
                for p in batch:
                    p.future.set_exception(exc)
                continue
            except Exception:
                log.exception("audit sequencer failed to commit a batch")
                for p in batch:
                    p.future.set_exception(
                        errors.UnavailableError("the audit log could not commit; retry")
                    )
                continue
            pos = 0
            for p in batch:
                p.future.set_result(results[pos : pos + len(p.entries)])
                pos += len(p.entries)

    def _drop_connection(self, *, failed: bool = True) -> None:
        if self._conn is not None:
            try:
                if failed:
                    self._conn.invalidate()
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                log.debug("closing a failed audit database connection failed", exc_info=True)
            self._conn = None

    def _commit_with_retry(self, entries: list[PreparedEntry]) -> list[Sequenced]:
        db_failures = 0
        # The hot statements run on the driver's cursor, so its own exceptions arrive unwrapped.
        driver = self._writer.dialect.loaded_dbapi
        integrity_errors = (sa.exc.IntegrityError, driver.IntegrityError)
        database_errors = (sa.exc.DBAPIError, driver.Error)
        while True:
            started = time.perf_counter()
            try:
                results, state = self._commit_once(entries)
            except _Lost:
                self._lost(started)
                log.info("another sequencer advanced the audit tree; re-reading and retrying")
                continue
            except integrity_errors:
                # A record id committed by another sequencer between our read and our write:
                # the state swap normally catches that first; treat it the same way.
                self._lost(started)
                continue
            except database_errors as exc:
                self._state = None
                self._drop_connection()
                db_failures += 1
                if db_failures >= _DB_RETRIES:
                    raise errors.UnavailableError("the audit database is unavailable") from exc
                time.sleep(0.05 * 2**db_failures)
                continue
            self.commits += 1
            if state is not None and self._on_commit is not None:
                self._on_commit(state)
            return results

    def _lost(self, started: float) -> None:
        """A compare-and-swap lost to another sequencer: the time it cost is a sample of stage
        ``audit.cas_conflict`` (so its count is the number of conflicts)."""
        self._state = None
        self.conflicts += 1
        telemetry.mark("audit.cas_conflict", started)

    def _commit_once(
        self, entries: list[PreparedEntry]
    ) -> tuple[list[Sequenced], TreeState | None]:
        now_ms = to_ms(self._clock())
        # One long-lived connection: on SQLite, closing the last connection to a WAL database
        # checkpoints it, which would cost more than the commit itself.
        if self._conn is None:
            self._conn = self._writer.connect()
        conn = self._conn
        with conn.begin():
            state = self._state or store.read_tree_state(conn)
            # The rest goes straight through the driver: SQLAlchemy's per-statement overhead
            # would cost more than the database work on this one hot path.
            sql = _Sql(conn)
            existing = sql.existing(list({e.record_id for e in entries}))
            results: list[Sequenced] = []
            new: list[PreparedEntry] = []
            next_index = state.size
            for e in entries:
                found = existing.get(e.record_id)
                if found is not None:
                    index, leaf_hash = found
                    if leaf_hash == e.leaf_hash:
                        results.append(Sequenced(e.record_id, index, duplicate=True))
                    else:
                        results.append(
                            Sequenced(e.record_id, index, error_code=errors.AlreadyExistsError.code)
                        )
                    continue
                existing[e.record_id] = (next_index, e.leaf_hash)
                results.append(Sequenced(e.record_id, next_index))
                new.append(e)
                next_index += 1
            if not new:
                sql.close()
                return results, None
            acc = merkle.Accumulator(state.frontier)
            created: list[tuple[int, int, bytes]] = []
            acc.extend((e.leaf_hash for e in new), created)
            frontier = acc.frontier()
            if not sql.swap(state, frontier, now_ms):
                sql.close()
                raise _Lost()
            sql.insert(new, state.size, created, now_ms)
            sql.close()
        self._state = TreeState(frontier.size, frontier.root(), frontier, state.version + 1)
        return results, self._state


def _columns(table: sa.Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns)


# Column lists of the raw statements, from the table definitions (one schema: ``audit.store``).
# A leaf row is ``idx``, the entry's own fields in column order, then ``integrated_at_ms``
# (``tests/unit/test_audit_schema.py`` checks that ``PreparedEntry`` carries them all).
_LEAF_COLUMNS = _columns(store.leaves)
_LEAF_FIELDS = operator.attrgetter(*_LEAF_COLUMNS[1:-1])
assert _LEAF_COLUMNS[0] == "idx" and _LEAF_COLUMNS[-1] == "integrated_at_ms"
_NODE_COLUMNS = _columns(store.nodes)
_OPENING_COLUMNS = _columns(store.openings)
_SUBJECT_COLUMNS = _columns(store.subject_index)
_UNSEAL_COLUMNS = _columns(store.unseals)
#: The rows of every entry are built as plain tuples in these orders (a dict per row cost more
#: than the database work); a schema whose columns differ stops the import, not the data.
_ROW_ORDERS = {
    _NODE_COLUMNS: ("level", "idx", "hash"),
    _OPENING_COLUMNS: ("idx", "epoch", "sealed"),
    _SUBJECT_COLUMNS: ("subject_mac", "idx", "epoch"),
}
if any(columns != order for columns, order in _ROW_ORDERS.items()):  # pragma: no cover
    raise ImportError("audit.sequencer builds rows in another column order than audit.store")


def _row(columns: Sequence[str], **values: object) -> tuple[object, ...]:
    """A row in ``columns`` order (a missing or extra value is a programming error)."""
    if len(values) != len(columns):
        raise errors.InternalError("a row does not match its table's columns")
    try:
        return tuple(values[c] for c in columns)
    except KeyError as exc:
        raise errors.InternalError("a row does not match its table's columns") from exc


class _Sql:
    """The sequencer's statements on the driver cursor of the current transaction.

    Table and column names come from the table definitions; every value is a bound parameter.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.postgres = conn.dialect.name == "postgresql"
        self.mark = "%s" if self.postgres else "?"
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def close(self) -> None:
        self.cursor.close()

    def _marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    def existing(self, record_ids: list[str]) -> dict[str, tuple[int, bytes]]:
        out: dict[str, tuple[int, bytes]] = {}
        for i in range(0, len(record_ids), 500):
            chunk = record_ids[i : i + 500]
            self.cursor.execute(
                f"SELECT record_id, idx, leaf_hash FROM {store.leaves.name} "  # noqa: S608
                f"WHERE record_id IN ({self._marks(len(chunk))})",
                chunk,
            )
            for rid, idx, h in self.cursor.fetchall():
                out[rid] = (int(idx), bytes(h))
        return out

    def swap(self, old: TreeState, frontier: merkle.Frontier, now_ms: int) -> bool:
        """The compare-and-swap: true only if no other writer moved the state since ``old``."""
        m = self.mark
        self.cursor.execute(
            f"UPDATE {store.tree_state.name} SET size = {m}, root = {m}, frontier = {m}, "  # noqa: S608
            f"version = {m}, updated_at_ms = {m} WHERE id = 1 AND size = {m} AND version = {m}",
            (
                frontier.size,
                frontier.root(),
                frontier.to_bytes(),
                old.version + 1,
                now_ms,
                old.size,
                old.version,
            ),
        )
        return bool(self.cursor.rowcount == 1)

    def _bulk(
        self, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[object, ...]]
    ) -> None:
        if not rows:
            return
        if self.postgres:
            # COPY is several times faster than a pipelined executemany on PostgreSQL, and runs
            # on the same connection, so inside the same transaction.
            statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
            with self.cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        self.cursor.executemany(
            f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({self._marks(len(columns))})",
            rows,
        )

    def _upsert_ignore(
        self, table: sa.Table, columns: Sequence[str], rows: list[tuple[object, ...]]
    ) -> None:
        if rows:
            self.cursor.executemany(
                f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
                f"VALUES ({self._marks(len(columns))}) ON CONFLICT DO NOTHING",
                rows,
            )

    def insert(
        self,
        new: list[PreparedEntry],
        first_index: int,
        created: list[tuple[int, int, bytes]],
        now_ms: int,
    ) -> None:
        leaf_rows: list[tuple[object, ...]] = []
        opening_rows: list[tuple[object, ...]] = []
        subject_rows: list[tuple[object, ...]] = []
        unseal_rows: list[tuple[object, ...]] = []
        copies: list[tuple[object, ...]] = []
        for offset, e in enumerate(new):
            idx = first_index + offset
            leaf_rows.append((idx, *_LEAF_FIELDS(e), now_ms))
            if e.sealed_opening is not None:  # _OPENING_COLUMNS
                opening_rows.append((idx, e.epoch, e.sealed_opening))
            if e.subject_mac is not None:  # _SUBJECT_COLUMNS
                subject_rows.append((e.subject_mac, idx, e.epoch))
            if e.unseal_target:
                unseal_rows.append(
                    _row(
                        _UNSEAL_COLUMNS,
                        record_id=e.unseal_target,
                        unseal_idx=idx,
                        unsealed_at_ms=now_ms,
                    )
                )
            if e.copy_subjects_from is not None:
                copies.append((idx, e.copy_subjects_from))
        self._bulk(store.leaves, _LEAF_COLUMNS, leaf_rows)
        self._bulk(store.nodes, _NODE_COLUMNS, created)  # (level, idx, hash) tuples
        self._bulk(store.openings, _OPENING_COLUMNS, opening_rows)
        self._upsert_ignore(store.subject_index, _SUBJECT_COLUMNS, subject_rows)
        self._upsert_ignore(store.unseals, _UNSEAL_COLUMNS, unseal_rows)
        m, index = self.mark, store.subject_index.name
        for row in copies:  # an unseal shows up in the history of the sealed entry's subject
            self.cursor.execute(
                f"INSERT INTO {index} ({', '.join(_SUBJECT_COLUMNS)}) "  # noqa: S608
                f"SELECT subject_mac, {m}, epoch FROM {index} WHERE idx = {m} "
                "ON CONFLICT DO NOTHING",
                row,
            )
