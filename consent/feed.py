"""The change hub: one reader of ``consent_events`` that fans new events out to every watcher.

Security servers follow consent changes through the ``WatchChanges`` stream (DESIGN §7: a
revocation stops access everywhere within 1 s). Rather than every stream polling the database,
one hub thread reads the events table and keeps the recent tail in memory; streams wait on its
condition variable.

- A commit in this process wakes the hub at once (``poke``), so a local change reaches the
  watchers in milliseconds.
- Changes committed by other replicas (PostgreSQL, N replicas) are found by polling every
  ``poll_interval`` (default 200 ms), well inside the 1 s budget.
- The buffer is always a contiguous run of sequence numbers, because only the hub fills it, in
  order, from the database (sequence order is commit order: see ``consent.store``).
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_right

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from consent import store
from consent.store import EventRow

log = logging.getLogger(__name__)


class ChangeHub:
    """Follows the event table; ``wait`` returns events after a position, blocking briefly."""

    def __init__(self, engine: Engine, *, poll_interval: float = 0.2, capacity: int = 4096) -> None:
        self._engine = engine
        self._poll_interval = poll_interval
        self._capacity = capacity
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._events: list[EventRow] = []
        self._seqs: list[int] = []
        with engine.connect() as conn:
            self._head = store.head_seq(conn)
        self._thread = threading.Thread(target=self._run, name="consent-hub", daemon=True)
        self._thread.start()

    @property
    def head(self) -> int:
        """The highest sequence number the hub has seen."""
        with self._cond:
            return self._head

    def committed_head(self) -> int:
        """The highest sequence number committed in the database (may be ahead of ``head``)."""
        with self._engine.connect() as conn:
            return store.head_seq(conn)

    def poke(self) -> None:
        """Something was committed: read the table now instead of at the next poll."""
        self._wake.set()

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._stopped.is_set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._poll_interval)
            self._wake.clear()
            try:
                self._sync()
            except sa.exc.SQLAlchemyError:
                log.warning("consent change hub could not read the event table", exc_info=True)

    def _sync(self) -> None:
        while True:
            with self._engine.connect() as conn:
                rows = store.events_after(conn, self._head, 1000)
            if not rows:
                return
            with self._cond:
                self._events.extend(rows)
                self._seqs.extend(r.seq for r in rows)
                self._head = rows[-1].seq
                if len(self._events) > 2 * self._capacity:
                    del self._events[: -self._capacity]
                    del self._seqs[: -self._capacity]
                self._cond.notify_all()
            if len(rows) < 1000:
                return

    def wait(self, after_seq: int, timeout: float) -> tuple[list[EventRow] | None, int]:
        """Events with ``seq > after_seq`` (waiting up to ``timeout`` for some), and the head.

        Returns ``(None, head)`` when ``after_seq`` is older than the buffer: the caller then
        reads the gap from the database (``read_after``).
        """
        with self._cond:
            if not self._has_after(after_seq) and not self._stopped.is_set():
                self._cond.wait(timeout)
            if self._seqs and after_seq < self._seqs[0] - 1:
                return None, self._head
            if not self._seqs and after_seq < self._head:
                return None, self._head
            index = bisect_right(self._seqs, after_seq)
            return self._events[index:], self._head

    def _has_after(self, after_seq: int) -> bool:
        return self._head > after_seq

    def read_after(self, after_seq: int, limit: int = 1000) -> list[EventRow]:
        """Read events after ``after_seq`` straight from the database (catch-up)."""
        with self._engine.connect() as conn:
            return store.events_after(conn, after_seq, limit)
