"""The entry feed: tells the notification service which citizen each new log entry is about.

``AuditEntryFeed.WatchEntries`` (docs/adr/0019) streams, in index order, one notice per
committed entry that names a citizen: the entry exactly as ``GetEntries`` returns it and the
citizen's national id, read from the entry's opening (the log holds it encrypted per epoch).
Only the notification service's certificate (``urn:cdx:service:notify``, issued by the
registry, not revoked) may call it: the national id travels in clear inside mutual TLS, to the
one service whose job is to tell that citizen.

What is sent:

- a SEALED entry never, even once unsealed: the entry that unseals it (kind ``unseal``) is sent
  instead, with the subject of the entry it unsealed, so the citizen learns of it once, when
  the inspector discloses it, whether the feed reads it live or catching up;
- an entry without an opening (the log's own entries about nobody, a log anchor) or whose
  epoch was crypto-shredded: nothing (there is nobody to tell);
- a heartbeat after every batch of notices and every ``heartbeat`` seconds, carrying the last
  index scanned: the subscriber commits what it got and keeps its cursor past skipped entries.

The feed reads only what the tree state says is committed (leaves, openings and the subject
index are written in the same transaction), so a subscriber resuming "after N" misses nothing.
Another process appending to the same database is seen at the next poll.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from audit import keys as audit_keys
from audit.keys import KeyRing
from audit.servicer import Peer, entry_pb
from audit.store import AuditStore, EntryRow
from cdx import errors, rpc
from cdx.globalconf import VerifiedGlobalConf
from cdx.v1 import audit_pb2, common_pb2

log = logging.getLogger(__name__)

SERVICE = "cdx.v1.AuditEntryFeed"
#: The only caller: the notification service's registry-issued certificate.
NOTIFY_PEER = "urn:cdx:service:notify"
KIND_UNSEAL = "unseal"
#: Entries read per database round trip.
SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class Notice:
    """One log entry and the citizen it is about."""

    entry: EntryRow
    subject: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Scan:
    """What one scan found: the notices, the last index examined and the committed size."""

    notices: list[Notice]
    scanned: int
    size: int


def _record(row: EntryRow) -> audit_pb2.AccessRecord:
    signed = audit_pb2.SignedAccessRecord.FromString(row.leaf)
    record: audit_pb2.AccessRecord = audit_pb2.AccessRecord.FromString(signed.record)
    return record


class EntryScanner:
    """Reads committed entries after a position and names the citizen of each (store reads and
    the opening keys; no policy beyond what is sent, see the module docstring)."""

    def __init__(self, store: AuditStore, keyring: KeyRing) -> None:
        self._store = store
        self._keyring = keyring

    def scan(self, after: int, limit: int = SCAN_BATCH) -> Scan:
        """Notices for committed entries with ``after < index``, at most ``limit`` examined."""
        size = self._store.tree_state().size
        start = max(after + 1, 0)
        end = min(size, start + max(limit, 1))
        if start >= end:
            return Scan([], min(after, size - 1), size)
        rows = self._store.entries(start, end)
        wanted: list[EntryRow] = []
        targets: dict[int, EntryRow] = {}  # unseal entry index -> the entry it unsealed
        for row in rows:
            if row.visibility == common_pb2.SEALED:
                continue  # told through its unseal entry, never by itself
            if row.kind == KIND_UNSEAL:
                target_id = _record(row).target_record_id
                target = self._store.find_record(target_id) if target_id else None
                if target is None:
                    continue
                targets[row.idx] = target
            wanted.append(row)
        opening_of = {r.idx: targets.get(r.idx, r) for r in wanted}
        sealed = self._store.sealed_openings([t.idx for t in opening_of.values()])
        epoch_keys = self._keyring.epoch_keys_for_reading([e for e, _ in sealed.values()])
        notices = []
        for row in wanted:
            source = opening_of[row.idx]
            found = sealed.get(source.idx)
            if found is None:
                continue  # an entry about nobody
            key = epoch_keys.get(found[0])
            if key is None:
                continue  # shredded: nobody can be named any more
            opening = audit_keys.open_opening(key, source.record_id, found[1])
            if opening.subject:
                notices.append(Notice(row, opening.subject))
        return Scan(notices, end - 1, size)


class EntryFeedServicer:
    """``AuditEntryFeed`` on grpc.aio: authorises the caller, then streams what the scanner
    finds (database reads in the thread pool, waiting on the event loop)."""

    def __init__(
        self,
        scanner: EntryScanner,
        conf: Callable[[], VerifiedGlobalConf],
        peer: Callable[[Any], Peer],
        threads: ThreadPoolExecutor,
        *,
        poll_interval: float = 0.2,
        heartbeat: float = 2.0,
    ) -> None:
        self._scanner = scanner
        self._conf = conf
        self._peer = peer
        self._threads = threads
        self._poll = poll_interval
        self._heartbeat = heartbeat

    def authorise(self, context: Any) -> None:
        """Only the notification service's current certificate.

        Raises:
            UnauthenticatedError: no client certificate.
            PermissionDeniedError: another identity.
            CertificateRevokedError: the notification service's certificate was revoked.
        """
        peer = self._peer(context)
        if peer.uri != NOTIFY_PEER:
            raise errors.PermissionDeniedError("only the notification service follows entries")
        if self._conf().is_revoked(peer.fingerprint, peer.certificate.serial_number):
            raise errors.CertificateRevokedError()

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self._threads, lambda: ctx.run(fn, *args))

    async def WatchEntries(
        self, request: audit_pb2.WatchEntriesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.EntryNotice]:
        await self._blocking(self.authorise, context)
        position = max(request.after_index, -1)
        last_beat = 0.0
        while True:
            scan: Scan = await self._blocking(self._scanner.scan, position)
            for notice in scan.notices:
                yield audit_pb2.EntryNotice(
                    index=notice.entry.idx, subject=notice.subject, entry=entry_pb(notice.entry)
                )
            position = scan.scanned
            caught_up = position >= scan.size - 1
            # A heartbeat closes every batch (the subscriber commits what it got) and keeps an
            # idle stream alive, moving the subscriber's cursor past entries it was not sent.
            if position >= 0 and (scan.notices or time.monotonic() - last_beat >= self._heartbeat):
                yield audit_pb2.EntryNotice(index=position, heartbeat=True, caught_up=caught_up)
                last_beat = time.monotonic()
            if caught_up:
                await asyncio.sleep(self._poll)


def generic_handler(servicer: EntryFeedServicer) -> grpc.GenericRpcHandler:
    """The ``AuditEntryFeed`` handler, with CDX error codes in the trailers."""

    async def watch(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            if not isinstance(request, audit_pb2.WatchEntriesRequest):
                raise errors.MalformedError("the request does not parse")
            async for notice in servicer.WatchEntries(request, context):
                yield notice
        except errors.CdxError as exc:
            await context.abort(
                exc.status,
                f"{exc.code}: {exc.message}",
                trailing_metadata=((rpc.ERROR_CODE_KEY, exc.code),),
            )

    def parse(data: bytes) -> Any:
        try:
            return audit_pb2.WatchEntriesRequest.FromString(data)
        except Exception:  # answered as malformed by the handler
            return None

    handler = grpc.unary_stream_rpc_method_handler(
        watch,
        request_deserializer=parse,
        response_serializer=audit_pb2.EntryNotice.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"WatchEntries": handler})
