"""A client of ``cdx.v1.AuditLog``: the security servers' ``AuditShipper`` and the read API.

``AuditClient(address, identity)`` keeps one long-lived mutual-TLS channel (a handshake per
call would cost more than the call). ``address`` may be a callable, e.g. reading
``audit_log_address`` from the current global configuration: the channel is rebuilt when the
address changes. Every failed call raises the peer's ``CdxError`` (``UnavailableError`` when the
log is down, so an outbox keeps its records and retries).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import grpc

from cdx import errors, rpc
from cdx.v1 import audit_pb2, audit_pb2_grpc

#: Items per AppendBatch call (the server's limit is ``audit.service.MAX_BATCH_ITEMS``).
SHIP_BATCH = 500
_MAX_BATCH_BYTES = 3 * 1024 * 1024
PAGE = 1000


class AuditClient:
    """Calls the audit log over one mutual-TLS channel; implements ``AuditShipper``."""

    def __init__(
        self,
        address: str | Callable[[], str],
        identity: rpc.TlsIdentity | None,
        *,
        ca_pem: bytes | None = None,
        timeout: float = 10.0,
        server_name: str | None = None,
    ) -> None:
        self._address = address
        self._identity = identity
        self._ca_pem = ca_pem
        self._timeout = timeout
        self._server_name = server_name
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._bound: str | None = None
        self._stub: audit_pb2_grpc.AuditLogStub | None = None

    def _resolve(self) -> str:
        address = self._address() if callable(self._address) else self._address
        if not address:
            raise errors.UnavailableError("no audit log address is configured")
        return address

    def stub(self) -> audit_pb2_grpc.AuditLogStub:
        """The stub over the current channel (rebuilt when the address changed)."""
        address = self._resolve()
        with self._lock:
            if self._stub is None or address != self._bound:
                if self._channel is not None:
                    self._channel.close()
                self._channel = rpc.secure_channel(
                    address, self._identity, self._ca_pem, server_name=self._server_name
                )
                self._stub = audit_pb2_grpc.AuditLogStub(self._channel)
                self._bound = address
            return self._stub

    def close(self) -> None:
        """Close the channel."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None
            self._bound = None

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _auth(token: str | None) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {token}"),) if token else None

    # --- AuditShipper -------------------------------------------------------------------------

    def ship(self, items: Sequence[audit_pb2.OutboxItem]) -> list[audit_pb2.AppendResult]:
        """Append records (``AppendBatch``, in chunks); one result per item, in order.

        Raises:
            UnavailableError: the log is unreachable (nothing is lost: appends are idempotent).
            CdxError: the log refused the whole call (e.g. this server is not registered).
        """
        results: list[audit_pb2.AppendResult] = []
        batch: list[audit_pb2.OutboxItem] = []
        size = 0
        for item in items:
            item_size = item.ByteSize()
            if batch and (len(batch) >= SHIP_BATCH or size + item_size > _MAX_BATCH_BYTES):
                results.extend(self._append_batch(batch))
                batch, size = [], 0
            batch.append(item)
            size += item_size
        if batch:
            results.extend(self._append_batch(batch))
        return results

    def _append_batch(self, items: list[audit_pb2.OutboxItem]) -> list[audit_pb2.AppendResult]:
        response: audit_pb2.AppendBatchResponse = rpc.invoke(
            self.stub().AppendBatch,
            audit_pb2.AppendBatchRequest(items=items),
            timeout=self._timeout * 3,
        )
        if len(response.results) != len(items):
            raise errors.UnavailableError("the audit log answered a different number of items")
        return list(response.results)

    def append(self, item: audit_pb2.OutboxItem) -> audit_pb2.AppendResult:
        """Append one record (``Append``)."""
        result: audit_pb2.AppendResult = rpc.invoke(self.stub().Append, item, timeout=self._timeout)
        return result

    # --- public reads -------------------------------------------------------------------------

    def checkpoint(self, min_cosignatures: int = 0) -> audit_pb2.Checkpoint:
        """The latest checkpoint (signed note with cosignatures)."""
        result: audit_pb2.Checkpoint = rpc.invoke(
            self.stub().GetCheckpoint,
            audit_pb2.GetCheckpointRequest(min_cosignatures=min_cosignatures),
            timeout=self._timeout,
        )
        return result

    def inclusion_proof(
        self, index: int = 0, tree_size: int = 0, record_id: str = ""
    ) -> audit_pb2.InclusionProof:
        """Inclusion proof of an entry (by index or record id) in a tree size (0 = latest)."""
        result: audit_pb2.InclusionProof = rpc.invoke(
            self.stub().GetInclusionProof,
            audit_pb2.InclusionProofRequest(index=index, tree_size=tree_size, record_id=record_id),
            timeout=self._timeout,
        )
        return result

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Consistency proof between two tree sizes."""
        result: audit_pb2.ConsistencyProof = rpc.invoke(
            self.stub().GetConsistencyProof,
            audit_pb2.ConsistencyProofRequest(size1=size1, size2=size2),
            timeout=self._timeout,
        )
        return list(result.hashes)

    def entries(self, start: int, end: int) -> list[audit_pb2.LogEntry]:
        """Entries ``[start, end)`` (the server may return fewer: page with ``iter_entries``)."""
        result: audit_pb2.GetEntriesResponse = rpc.invoke(
            self.stub().GetEntries,
            audit_pb2.GetEntriesRequest(start=start, end=end),
            timeout=self._timeout * 3,
        )
        return list(result.entries)

    def iter_entries(self, start: int, end: int, page: int = PAGE) -> Iterator[audit_pb2.LogEntry]:
        """Every entry ``[start, end)`` in order; stops early if the log has fewer."""
        pos = start
        while pos < end:
            batch = self.entries(pos, min(end, pos + page))
            if not batch:
                return
            for e in batch:
                if e.index != pos:
                    raise errors.VerificationError("the log returned entries out of order")
                yield e
                pos += 1

    def list_checkpoints(
        self, after_size: int = 0, limit: int = PAGE
    ) -> list[audit_pb2.Checkpoint]:
        """Checkpoints above ``after_size`` (0 = from the first, the empty tree's included)."""
        result: audit_pb2.ListCheckpointsResponse = rpc.invoke(
            self.stub().ListCheckpoints,
            audit_pb2.ListCheckpointsRequest(after_size=after_size, limit=limit),
            timeout=self._timeout * 3,
        )
        return list(result.checkpoints)

    def iter_checkpoints(self) -> Iterator[audit_pb2.Checkpoint]:
        """Every stored checkpoint, oldest first."""
        after = 0
        while True:
            page = self.list_checkpoints(after, PAGE)
            yield from page
            if len(page) < PAGE or page[-1].size <= after:
                return
            after = page[-1].size

    # --- witnesses ----------------------------------------------------------------------------

    def add_cosignature(self, checkpoint_text: str, line: str, witness: str) -> None:
        """Hand the log this witness's cosignature of a checkpoint."""
        rpc.invoke(
            self.stub().AddCosignature,
            audit_pb2.AddCosignatureRequest(
                checkpoint_note=checkpoint_text, cosignature_line=line, witness=witness
            ),
            timeout=self._timeout,
        )

    # --- inspectors and citizens --------------------------------------------------------------

    def search(
        self, request: audit_pb2.SearchRequest, *, token: str | None = None
    ) -> audit_pb2.SearchResponse:
        """An inspector's search (inspector certificate, or an inspector token via the portal)."""
        result: audit_pb2.SearchResponse = rpc.invoke(
            self.stub().Search, request, timeout=self._timeout * 3, metadata=self._auth(token)
        )
        return result

    def unseal(
        self, record_id: str, reason: str, *, token: str | None = None
    ) -> audit_pb2.AppendResult:
        """Unseal a sealed entry for its citizen."""
        result: audit_pb2.AppendResult = rpc.invoke(
            self.stub().Unseal,
            audit_pb2.UnsealRequest(record_id=record_id, reason=reason),
            timeout=self._timeout,
            metadata=self._auth(token),
        )
        return result

    def citizen_history(
        self, token: str, limit: int = 100, before_index: int = 0, acting_for: str = ""
    ) -> audit_pb2.CitizenHistoryResponse:
        """A citizen's own entries with openings and proofs (the token decides whose; or
        ``acting_for``, a person the citizen legally represents), newest first;
        ``before_index`` is the cursor of the previous page (``next_before_index``)."""
        result: audit_pb2.CitizenHistoryResponse = rpc.invoke(
            self.stub().CitizenHistory,
            audit_pb2.CitizenHistoryRequest(
                limit=limit, before_index=before_index, acting_for=acting_for
            ),
            timeout=self._timeout * 3,
            metadata=self._auth(token),
        )
        return result

    def list_refused(
        self, after_id: int = 0, limit: int = PAGE, recorder: str = "", *, token: str | None = None
    ) -> list[audit_pb2.RefusedAppend]:
        """Appends the log refused for good, oldest first, after ``after_id`` (inspectors)."""
        result: audit_pb2.ListRefusedResponse = rpc.invoke(
            self.stub().ListRefused,
            audit_pb2.ListRefusedRequest(after_id=after_id, limit=limit, recorder=recorder),
            timeout=self._timeout,
            metadata=self._auth(token),
        )
        return list(result.refused)
