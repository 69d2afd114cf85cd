"""Publishes signed C2SP checkpoints of the committed tree every few seconds.

A checkpoint is signed only for the tree state that is **committed** (read back from the
database, where the sequencer's state row and its leaves commit in one transaction), so it is
never ahead of durable data. Before signing, the checkpointer proves, from the stored nodes,
that the new tree extends the last published checkpoint (RFC 9162 §2.1.4): a store that was
rewritten or truncated underneath the log is refused and raises an alarm instead of being
signed. Two audit processes on one database publish identical checkpoints (Ed25519 signatures
are deterministic), and the size is the checkpoints' primary key, so they never conflict.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from audit.store import AuditStore, CheckpointRow
from cdx import clock as cdx_clock
from cdx import errors, merkle, note, telemetry
from cdx.globalconf import to_ms

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1.0


class Checkpointer:
    """Signs and stores a checkpoint whenever the committed tree has grown."""

    def __init__(
        self,
        store: AuditStore,
        signer: note.NoteSigner,
        origin: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: cdx_clock.Clock = cdx_clock.utcnow,
        on_health: Callable[[str | None], None] | None = None,
        on_publish: Callable[[], None] | None = None,
    ) -> None:
        self._on_publish = on_publish
        if not 0 < interval <= 5:
            raise errors.InvalidArgumentError("checkpoints are published every 1-5 s at most")
        self._store = store
        self._signer = signer
        self._origin = origin
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="cdx-audit-checkpointer", daemon=True
        )
        self._alarm: str | None = None
        self._on_health = on_health

    def health(self) -> str | None:
        """``None`` when healthy, else why the last tree state was refused."""
        return self._alarm

    def nudge(self) -> None:
        """Publish soon (e.g. after a commit) instead of waiting for the interval."""
        self._wake.set()

    def publish_once(self) -> CheckpointRow | None:
        """Sign a checkpoint of the committed tree if it grew; returns it, or ``None``.

        Raises:
            CheckpointInconsistentError: the committed tree does not extend the last checkpoint.
        """
        state = self._store.tree_state()
        last = self._store.latest_checkpoint()
        if last is not None:
            if state.size < last.size or (state.size == last.size and state.root != last.root):
                raise self._refuse("the committed tree is behind or forks the last checkpoint")
            if state.size == last.size:
                return None
            proof = self._store.consistency_proof(last.size, state.size)
            try:
                merkle.verify_consistency(last.size, state.size, proof, last.root, state.root)
            except errors.ProofError as exc:
                raise self._refuse(
                    "the committed tree does not extend the last checkpoint"
                ) from exc
        elif state.size and self._store.root_at(state.size) != state.root:
            raise self._refuse("the stored nodes do not match the committed root")
        text = note.Checkpoint(self._origin, state.size, state.root).to_text()
        with telemetry.stage("audit.checkpoint"):
            signed = self._signer.sign(text)
            now_ms = to_ms(self._clock())
            self._store.insert_checkpoint(state.size, state.root, signed, now_ms)
        self._set_alarm(None)
        if self._on_publish is not None:
            self._on_publish()
        return CheckpointRow(state.size, state.root, signed, now_ms)

    def _set_alarm(self, alarm: str | None) -> None:
        changed = alarm != self._alarm
        self._alarm = alarm
        if changed and self._on_health is not None:
            self._on_health(alarm)

    def _refuse(self, why: str) -> errors.CheckpointInconsistentError:
        self._set_alarm(why)
        log.error("audit checkpoint refused: %s", why)
        return errors.CheckpointInconsistentError(why)

    def start(self) -> Checkpointer:
        """Start publishing in a background thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish_once()
            except errors.CheckpointInconsistentError:
                pass  # already logged and alarmed; keep checking (an operator must intervene)
            except Exception:
                log.exception("publishing an audit checkpoint failed")
            self._wake.wait(self._interval)
            self._wake.clear()
