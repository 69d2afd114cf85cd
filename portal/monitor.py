"""Watches the audit log's health for the inspector console: every look verifies the newest
checkpoint that has the witness quorum (log key, cosignatures) and its consistency with the last
one this portal accepted, so a rewritten or forked log shows as an alarm, not as a smaller
number. Checkpoints newer than that are still waiting for their witnesses (a few seconds on a
healthy instance): looking at them would make the page flap to "awaiting cosignatures" every
time an inspector's own query grew the log. Only a newer checkpoint left without its quorum for
longer than ``WITNESS_GRACE`` (the witnesses have stopped) shows as awaiting cosignatures.

Consistency proofs are computed from the log's tiles when global configuration names a tile
endpoint (else taken from the log's API, and the page says which). A proof from tiles that
does not verify is checked again with the log's own proof: if that one verifies, the tiles are
bad (``invalid_tiles``), not the log; if it does not either, the log was rewritten."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cdx import errors
from portal.backends import AuditBackend, ProofSource, SignedCheckpoint, TileFetcher
from portal.tileproofs import INVALID_TILES, TILES_UNAVAILABLE, consistency_from_tile_endpoint
from portal.verify import CheckedCheckpoint, LogTrust, check_checkpoint, check_consistency

log = logging.getLogger(__name__)
#: How long a new checkpoint may wait for its witness quorum before the page says so.
WITNESS_GRACE = timedelta(seconds=60)


@dataclass(frozen=True)
class HealthReport:
    """What the health page shows; ``problem`` is a stable code when something failed."""

    checked_at: datetime
    checkpoint: CheckedCheckpoint | None
    published_at: datetime | None
    problem: str
    consistent_from: int | None  # the size of the earlier checkpoint the new one extends
    last_good_at: datetime | None
    registered_witnesses: tuple[str, ...]
    proof_source: ProofSource = "api"
    tiles_url: str = ""


class LogMonitor:
    """Keeps the last verified checkpoint in memory (per portal process)."""

    def _checkpoints(self, quorum: int) -> tuple[SignedCheckpoint, SignedCheckpoint]:
        """The newest checkpoint with ``quorum`` cosignatures (else, none has it yet, the newest
        one, which then shows as awaiting cosignatures), and the newest one."""
        latest = self._audit.checkpoint()
        if quorum:
            try:
                return self._audit.checkpoint(quorum), latest
            except errors.NotFoundError:
                pass
        return latest, latest

    def __init__(self, audit: AuditBackend, now_fn: Callable[[], datetime]) -> None:
        self._audit = audit
        self._now = now_fn
        self._lock = threading.Lock()
        self._last: CheckedCheckpoint | None = None
        self._last_good_at: datetime | None = None

    def check(self, trust: LogTrust, tiles: TileFetcher | None = None) -> HealthReport:
        """Fetch and verify the latest checkpoint (consistency proofs from ``tiles`` when
        given); never raises for a verification failure."""
        now = self._now()
        witnesses = tuple(sorted(trust.witnesses))
        source: ProofSource = "tiles" if tiles is not None else "api"
        url = tiles.prefix if tiles is not None else ""
        try:
            signed, latest = self._checkpoints(trust.quorum)
        except errors.CdxError as exc:
            return HealthReport(
                now, None, None, exc.code, None, self._last_good_at, witnesses, source, url
            )
        try:
            checked = check_checkpoint(signed.note, trust)
        except errors.CdxError as exc:
            log.warning("audit checkpoint failed verification: %s", exc.code)
            return HealthReport(
                now,
                None,
                signed.published_at,
                exc.code,
                None,
                self._last_good_at,
                witnesses,
                source,
                url,
            )
        with self._lock:
            previous = self._last
            consistent_from = None
            if previous is not None:
                problem = self._inconsistency(previous, checked, tiles)
                if problem:
                    log.error(
                        "audit log consistency check failed (%s): sizes %d -> %d",
                        problem,
                        previous.size,
                        checked.size,
                    )
                    return HealthReport(
                        now,
                        checked,
                        signed.published_at,
                        problem,
                        None,
                        self._last_good_at,
                        witnesses,
                        source,
                        url,
                    )
                consistent_from = previous.size
            self._last = checked
            self._last_good_at = now
        waiting = latest.size > checked.size and (
            latest.published_at is None or now - latest.published_at > WITNESS_GRACE
        )
        problem = "" if checked.quorum_met and not waiting else "awaiting_cosignatures"
        return HealthReport(
            now, checked, signed.published_at, problem, consistent_from, now, witnesses, source, url
        )

    def _inconsistency(
        self, previous: CheckedCheckpoint, checked: CheckedCheckpoint, tiles: TileFetcher | None
    ) -> str:
        """Why ``checked`` does not extend ``previous`` (``""`` when it does)."""
        if checked.size < previous.size:
            return "checkpoint_inconsistent"  # the log shrank
        if tiles is not None:
            try:
                proof = consistency_from_tile_endpoint(tiles, previous.size, checked.size)
                check_consistency(previous, checked, proof)
                return ""
            except errors.UnavailableError:
                return TILES_UNAVAILABLE
            except (errors.VerificationError, errors.MalformedError):
                pass  # bad tiles, or a rewritten log: the log's own proof tells which
        try:
            check_consistency(
                previous, checked, self._audit.consistency_proof(previous.size, checked.size)
            )
        except errors.VerificationError:
            return "checkpoint_inconsistent"
        except errors.CdxError as exc:
            return exc.code
        return INVALID_TILES if tiles is not None else ""
