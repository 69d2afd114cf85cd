"""Follows the audit log's entry feed (``AuditEntryFeed.WatchEntries``) from the stored cursor
and hands what it brings to ``NotifyService.ingest``.

Notices are collected until the feed's next heartbeat (the log sends one after every batch and
every few seconds), then ingested with the heartbeat's position in one transaction. On any
failure (the log down, a dropped stream, the database) the thread reconnects from the stored
cursor with exponential backoff: entries are replayed, never lost, and the outbox's
idempotency keys keep a replay from queueing a message twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from cdx import errors, rpc
from cdx.v1 import audit_pb2, audit_pb2_grpc
from notify.service import Notice, NotifyService

log = logging.getLogger(__name__)

#: Notices ingested together at most (a long catch-up commits as it goes).
MAX_BATCH = 200


class EntryFeedFollower:
    """A thread following the audit log's entry feed for one notification service."""

    def __init__(
        self,
        service: NotifyService,
        audit_address: Callable[[], str],
        identity: rpc.TlsIdentity,
        *,
        max_backoff: float = 5.0,
    ) -> None:
        self._service = service
        self._address = audit_address
        self._identity = identity
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._call: grpc.Future | None = None
        self._lock = threading.Lock()
        self.connected = threading.Event()  # set while the stream is caught up
        self._thread = threading.Thread(target=self._run, name="cdx-notify-feed", daemon=True)

    def start(self) -> EntryFeedFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._follow()
                backoff = 0.2
            except Exception as exc:  # log down, stream dropped, database: reconnect
                code = exc.code if isinstance(exc, errors.CdxError) else type(exc).__name__
                log.info("entry feed interrupted (%s); reconnecting from the cursor", code)
            self.connected.clear()
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff)

    def _follow(self) -> None:
        address = self._address()
        if not address:
            raise errors.UnavailableError("global configuration names no audit log")
        channel = rpc.secure_channel(address, self._identity)
        try:
            stub = audit_pb2_grpc.AuditEntryFeedStub(channel)
            after = self._service.cursor()
            call = stub.WatchEntries(audit_pb2.WatchEntriesRequest(after_index=after))
            with self._lock:
                self._call = call
            if self._stop.is_set():
                call.cancel()
            pending: list[Notice] = []
            try:
                for message in call:
                    if message.heartbeat:
                        self._service.ingest(pending, int(message.index))
                        pending = []
                        if message.caught_up:
                            self.connected.set()
                        continue
                    pending.append(Notice(int(message.index), message.subject, message.entry))
                    if len(pending) >= MAX_BATCH:
                        self._service.ingest(pending, pending[-1].index)
                        pending = []
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                raise rpc.error_from_rpc(exc) from exc
        finally:
            with self._lock:
                self._call = None
            channel.close()
