"""Checks the record signatures of append batches in worker processes.

A record signature check (ECDSA P-256 or Ed25519, ~100 µs) is the largest cost of an append, it
holds the GIL, and a batch's checks are independent: a batch is split over the workers, each
returning one outcome per record (``None`` for a valid signature by the caller's key, else the
refusal code). Only the signed records travel to the workers, never the openings they came
with. The rest of the checks run in the service (``AuditService.prepare_append``).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from google.protobuf.message import DecodeError

from cdx import crypto, errors, records
from cdx.v1 import audit_pb2

_keys: dict[bytes, crypto.PublicSigningKey] = {}


def check_signatures(
    signed_records: Sequence[bytes], caller: str, key_der: bytes
) -> list[str | None]:
    """Per serialized ``SignedAccessRecord``: ``None`` when it is the caller's and its
    signature verifies under ``key_der`` (SPKI DER), else the refusal code (runs in workers)."""
    key = _keys.get(key_der)
    if key is None:
        if len(_keys) > 64:
            _keys.clear()
        key = _keys[key_der] = crypto.as_signing_public_key(crypto.public_key_from_der(key_der))
    out: list[str | None] = []
    for raw in signed_records:
        try:
            signed = audit_pb2.SignedAccessRecord.FromString(raw)
            claimed = records.parse_unverified_record(signed)
            if claimed.recorder != caller:
                out.append(errors.PermissionDeniedError.code)
                continue
            records.verify_access_record(signed, key)
            out.append(None)
        except errors.CdxError as exc:
            out.append(exc.code)
        except DecodeError:
            out.append(errors.MalformedError.code)
    return out


def _ready() -> bool:
    return True


class SignaturePool:
    """``workers`` processes checking signatures, started by ``warm_up`` (or on first use)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: the parent runs gRPC and database threads, which a fork would copy
                # badly.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            return self._pool

    def warm_up(self) -> None:
        """Start the workers now, in the background: a spawned worker imports the whole
        program (seconds on a loaded machine), which the first batch should not wait for."""
        pool = self._executor()
        for _ in range(self.workers):
            pool.submit(_ready)

    def check(
        self, signed_records: Sequence[bytes], caller: str, key_der: bytes
    ) -> Future[list[str | None]]:
        """Split the records over the workers; the future holds one outcome per record."""
        pool = self._executor()
        size = max(1, -(-len(signed_records) // self.workers))
        parts = [
            pool.submit(check_signatures, list(signed_records[i : i + size]), caller, key_der)
            for i in range(0, len(signed_records), size)
        ]
        result: Future[list[str | None]] = Future()
        remaining = [len(parts)]
        lock = threading.Lock()

        def done(_part: Future[list[str | None]]) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            try:
                result.set_result([code for p in parts for code in p.result()])
            except Exception:  # a worker died: the batch fails and its sender retries
                result.set_exception(errors.UnavailableError("a signature worker failed"))

        if not parts:
            result.set_result([])
        for part in parts:
            part.add_done_callback(done)
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
