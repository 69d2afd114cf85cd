"""Collects cosignatures of the log's checkpoints from tlog-witnesses, pushing each new checkpoint
with a consistency proof (c2sp.org/tlog-witness ``add-checkpoint``).

The witnesses are configured by URL prefix and cosignature verifier key (``URL=VKEY``): an
external standard witness, or a CDX witness (``cdx audit witness serve``, or a security server's
witness served over HTTP). Each answer is verified before it is stored beside the checkpoint; the
security servers' own witnesses, which poll the log, keep sending theirs with ``AddCosignature``.
Only cosignatures of witnesses registered in global configuration count towards the quorum (a
registered security server's witness is stored under its server id, however it was reached).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from audit.store import AuditStore
from audit.tlogwitness import WitnessClient
from cdx import clock as cdx_clock
from cdx import errors, note
from cdx.globalconf import to_ms

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1.0


def witness_client(option: str, *, timeout: float = 10.0) -> WitnessClient:
    """A client from ``URL=VKEY`` (the witness's URL prefix and cosignature verifier key).

    Raises:
        InvalidArgumentError: not ``URL=VKEY`` with an http(s) URL.
        NoteFormatError: the key is not a cosignature/v1 verifier key.
    """
    url, sep, vkey = option.partition("=")
    if not sep or not url.startswith(("http://", "https://")):
        raise errors.InvalidArgumentError(
            "a witness is URL=VKEY, e.g. https://w.example=name+id+key"
        )
    return WitnessClient(url, note.CosignatureVerifier.from_key_text(vkey), timeout=timeout)


class CosignatureCollector:
    """Asks every configured witness to cosign the newest checkpoint it has not cosigned yet."""

    def __init__(
        self,
        store: AuditStore,
        witnesses: list[WitnessClient],
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: cdx_clock.Clock = cdx_clock.utcnow,
        stored_as: Callable[[note.CosignatureVerifier], str] = lambda v: v.name,
        on_store: Callable[[], None] | None = None,
    ) -> None:
        self._on_store = on_store
        self._stored_as = stored_as
        self._store = store
        self._witnesses = witnesses
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdx-audit-cosigners", daemon=True)
        self.last_errors: dict[str, str] = {}

    def collect_once(self) -> int:
        """One round; returns how many cosignatures were stored."""
        latest = self._store.latest_checkpoint()
        if latest is None:
            return 0
        have = {
            (s.name, s.key_id)
            for s in (note.NoteSignature.parse_line(line) for line in latest.cosignature_lines)
        }
        stored = 0
        for witness in self._witnesses:
            if (witness.name, witness.verifier.key_id) in have:
                continue

            def proof_from(old: int, size: int = latest.size) -> list[bytes]:
                if old > size:  # the witness is ahead of this log: it will refuse, as it should
                    return []
                return self._store.consistency_proof(old, size)

            try:
                sig = witness.cosign(latest.note, proof_from)
            except errors.CdxError as exc:
                self.last_errors[witness.url] = exc.code
                log.warning(
                    "witness %s did not cosign checkpoint %d: %s",
                    witness.url,
                    latest.size,
                    exc.message,
                )
                continue
            self.last_errors.pop(witness.url, None)
            self._store.insert_cosignature(
                latest.size,
                self._stored_as(witness.verifier),
                sig.to_line(),
                note.cosignature_timestamp(sig),
                to_ms(self._clock()),
            )
            stored += 1
        if stored and self._on_store is not None:
            self._on_store()
        return stored

    def nudge(self) -> None:
        self._wake.set()

    def start(self) -> CosignatureCollector:
        if self._witnesses:
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.collect_once()
            except Exception:
                log.exception("collecting cosignatures failed")
            self._wake.wait(self._interval)
            self._wake.clear()
