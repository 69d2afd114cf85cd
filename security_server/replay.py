"""The replay cache: a message id is accepted once within the freshness window (DESIGN §6.2).

Two layers:

- in memory, every id this process has seen or is processing (``reserve`` raises
  ``ReplayError`` at once for a duplicate; loaded from the database at start);
- in the database, table ``ss_replay`` with a primary key on (consumer server, message id),
  shared by replicas and surviving restarts. The row is written **in the same transaction as
  the access record** of the decision (``Outbox.record(..., claim=...)``), so one durable commit
  covers both and no data is released before the id is durably burnt. If another replica
  committed the same id first, that transaction reports the conflict and the request is denied
  as a replay.

Rows and memory entries are purged once expired; by then ``verify_request`` rejects the
message as stale anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cdx import errors
from cdx.globalconf import to_ms
from security_server.groupcommit import RETRYING_ALONE, GroupCommitter
from security_server.store import fast_insert
from security_server.store import replay as replay_table


@dataclass(frozen=True)
class Claim:
    """A message id reserved by ``ReplayGuard.reserve``, to be committed with its record."""

    consumer_server: str
    message_id: str
    expires_ms: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.consumer_server, self.message_id)


class ReplayGuard:
    """Reserves message ids; a second reservation of the same id raises ``ReplayError``."""

    def __init__(self, engine: Engine, committer: GroupCommitter, now: datetime) -> None:
        self._committer = committer
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], int] = {}
        self._reserved: set[tuple[str, str]] = set()
        committer.register("replay_purge", _purge)
        now_ms = to_ms(now)
        with engine.connect() as conn:
            for row in conn.execute(
                sa.select(replay_table).where(replay_table.c.expires_ms >= now_ms)
            ):
                self._seen[(row.consumer_server, row.message_id)] = row.expires_ms

    def reserve(self, consumer_server: str, message_id: str, expires_ms: int) -> Claim:
        """Reserve ``message_id`` for one request of this process.

        Raises:
            ReplayError: the id was seen before, or another request is processing it.
        """
        claim = Claim(consumer_server, message_id, expires_ms)
        with self._lock:
            if claim.key in self._seen or claim.key in self._reserved:
                raise errors.ReplayError()
            self._reserved.add(claim.key)
        return claim

    def settle(self, claim: Claim, *, committed: bool) -> None:
        """After the commit carrying ``claim``: remember it (committed, or lost to a replica)
        or release it (the commit failed and nothing was stored)."""
        with self._lock:
            self._reserved.discard(claim.key)
            if committed:
                self._seen[claim.key] = claim.expires_ms

    def purge(self, now: datetime) -> int:
        """Forget expired ids in memory and in the database; returns the rows deleted."""
        now_ms = to_ms(now)
        with self._lock:
            for key in [k for k, exp in self._seen.items() if exp < now_ms]:
                del self._seen[key]
        return int(self._committer.run("replay_purge", now_ms))

    def __len__(self) -> int:
        return len(self._seen)


def claim_rows(conn: sa.Connection, claims: Sequence[Claim | None]) -> list[bool]:
    """Insert the claims' rows; returns, per claim, whether it is fresh (``None`` is fresh).

    Runs inside the group-commit transaction. This process never submits an id it has seen
    (``reserve``), so the fast path inserts blindly; an id a replica committed fails the primary
    key, the committer retries each job alone, and that retry reads first and reports the claim
    as not fresh.
    """
    wanted = [c for c in claims if c is not None]
    existing: set[tuple[str, str]] = set()
    if wanted and conn.info.get(RETRYING_ALONE):
        ids = sorted({c.message_id for c in wanted})
        existing = {
            (row.consumer_server, row.message_id)
            for row in conn.execute(
                sa.select(replay_table.c.consumer_server, replay_table.c.message_id).where(
                    replay_table.c.message_id.in_(ids)
                )
            )
        }
    fresh: list[bool] = []
    rows: list[dict[str, object]] = []
    for claim in claims:
        if claim is None:
            fresh.append(True)
            continue
        if claim.key in existing:
            fresh.append(False)
            continue
        existing.add(claim.key)
        rows.append(
            {
                "consumer_server": claim.consumer_server,
                "message_id": claim.message_id,
                "expires_ms": claim.expires_ms,
            }
        )
        fresh.append(True)
    fast_insert(conn, replay_table, rows)
    return fresh


def _purge(conn: sa.Connection, nows: Sequence[int]) -> list[int]:
    result = conn.execute(sa.delete(replay_table).where(replay_table.c.expires_ms < max(nows)))
    return [int(result.rowcount or 0)] * len(nows)
