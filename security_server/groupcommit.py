"""Group commit: many threads' writes, one writer thread, one transaction per batch.

A request thread submits a job (a kind and a payload) and waits on its future. The writer
thread takes every job queued so far, runs each kind's batch handler inside one transaction,
commits, and only then resolves the futures: a caller that got its result knows its row is
durable (SQLite WAL with ``synchronous=FULL``, or a PostgreSQL commit). While a commit runs, new
jobs queue up and form the next batch, so throughput grows with load without any timer.

If a batch fails, every job in it is retried alone in its own transaction (with
``RETRYING_ALONE`` set, so handlers can take a careful path), so one bad job cannot fail its
neighbours; each caller then sees its own job's outcome.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cdx import db, errors

log = logging.getLogger(__name__)

#: A batch handler runs inside the writer's transaction and returns one result per payload.
BatchHandler = Callable[[sa.Connection, Sequence[Any]], Sequence[Any]]

_STOP = object()

#: Key of ``Connection.info`` that is true while a job is retried alone after its batch failed
#: (handlers may then take a slower path that cannot fail, e.g. read before insert).
RETRYING_ALONE = "cdx_retrying_alone"


class _Job:
    __slots__ = ("future", "kind", "payload")

    def __init__(self, kind: str, payload: Any) -> None:
        self.kind = kind
        self.payload = payload
        self.future: Future[Any] = Future()


class GroupCommitter:
    """Serialises writes through one thread and commits them in shared transactions."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 1000,
        name: str = "cdx-group-commit",
    ) -> None:
        self._engine = db.writer(engine)
        self._max_batch = max_batch
        self._handlers: dict[str, BatchHandler] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: sa.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.batches = 0
        self.jobs = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def register(self, kind: str, handler: BatchHandler) -> None:
        """Register the batch handler for ``kind`` (before submitting jobs of that kind)."""
        self._handlers[kind] = handler

    def submit(self, kind: str, payload: Any) -> Future[Any]:
        """Queue one job; its future resolves after the transaction holding it committed.

        Raises:
            UnavailableError: the committer is closed.
        """
        if kind not in self._handlers:
            raise errors.InternalError(f"no handler for job kind {kind!r}")
        job = _Job(kind, payload)
        with self._lock:
            if self._closed:
                raise errors.UnavailableError("the store is shutting down")
            self._queue.put(job)
        return job.future

    def run(self, kind: str, payload: Any, timeout: float | None = 30.0) -> Any:
        """Submit a job and wait for its committed result.

        Raises:
            UnavailableError: the store did not commit in time or failed.
            CdxError: whatever the job's handler raised.
        """
        future = self.submit(kind, payload)
        try:
            return future.result(timeout=timeout)
        except TimeoutError as exc:
            raise errors.UnavailableError("the store did not commit in time") from exc

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    # --- writer thread ----------------------------------------------------------------------

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # pragma: no cover - a broken connection may fail to close
                log.debug("closing a failed store connection failed", exc_info=True)
        self._conn = None

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Job] = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
        self._drop_connection()

    def _execute(self, jobs: Sequence[_Job], *, alone: bool = False) -> list[Any]:
        by_kind: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            by_kind.setdefault(job.kind, []).append(index)
        results: list[Any] = [None] * len(jobs)
        conn = self._connection()
        conn.info[RETRYING_ALONE] = alone
        with conn.begin():
            for kind, indexes in by_kind.items():
                out = self._handlers[kind](conn, [jobs[i].payload for i in indexes])
                if len(out) != len(indexes):
                    raise errors.InternalError("batch handler returned a wrong result count")
                for i, result in zip(indexes, out):
                    results[i] = result
        return results

    def _commit(self, batch: list[_Job]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        try:
            results = self._execute(batch)
        except Exception as exc:
            self._drop_connection()
            log.warning(
                "group commit of %d job(s) failed (%s); retrying one by one",
                len(batch),
                type(exc).__name__,
            )
            for job in batch:
                try:
                    (result,) = self._execute([job], alone=True)
                except Exception as single_exc:
                    self._drop_connection()
                    _fail(job, single_exc)
                else:
                    job.future.set_result(result)
            return
        for job, result in zip(batch, results):
            job.future.set_result(result)


def _fail(job: _Job, exc: BaseException) -> None:
    if isinstance(exc, errors.CdxError):
        job.future.set_exception(exc)
        return
    log.error("store write failed (%s)", type(exc).__name__, exc_info=exc)
    wrapped = errors.UnavailableError("the store could not commit")
    wrapped.__cause__ = exc
    job.future.set_exception(wrapped)
