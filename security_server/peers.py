"""Long-lived gRPC channels to peer security servers and to local backends.

One channel per peer, created on first use and reused for every exchange (a new mutual-TLS
handshake costs ~4 ms of CPU here, PERFORMANCE-FACTS.md). A channel is replaced only when the
peer's address in global configuration changes. Exchanges with a peer travel over one
``Exchange.Stream`` on that channel (``security_server.streaming``), or as unary ``Forward``
calls when streaming is off or the peer does not implement it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import grpc

from cdx import errors, rpc
from cdx.dependencies import Dependency
from cdx.v1 import exchange_pb2, exchange_pb2_grpc
from security_server.streaming import PeerStream


class _Pool:
    def __init__(self, identity: rpc.TlsIdentity | None, make_stub: Any) -> None:
        self._identity = identity
        self._make_stub = make_stub
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, grpc.Channel, Any]] = {}
        self._closed = False

    def stub(self, key: str, address: str) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == address:
            return entry[2]
        with self._lock:
            if self._closed:
                raise errors.UnavailableError("the server is shutting down")
            entry = self._entries.get(key)
            if entry is not None and entry[0] == address:
                return entry[2]
            if entry is not None:
                entry[1].close()
            channel = rpc.secure_channel(address, self._identity)
            stub = self._make_stub(channel)
            self._entries[key] = (address, channel, stub)
            return stub

    def drop(self, key: str) -> None:
        """Close ``key``'s channel; the next call opens a new one (see ``BackendPool.fetch``)."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            entry[1].close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _, channel, _ in self._entries.values():
                channel.close()
            self._entries.clear()


class PeerPool:
    """``Exchange`` stubs of peer security servers over mutual TLS (this server's auth cert)."""

    def __init__(self, identity: rpc.TlsIdentity, *, stream: bool = True) -> None:
        self._pool = _Pool(identity, exchange_pb2_grpc.ExchangeStub)
        self._stream = stream
        self._lock = threading.Lock()
        self._streams: dict[str, tuple[Any, PeerStream]] = {}  # server id -> (stub, stream)
        self._unary_only: set[str] = set()

    def _peer_stream(self, server_id: str, stub: Any) -> PeerStream | None:
        if not self._stream or server_id in self._unary_only:
            return None
        with self._lock:
            entry = self._streams.get(server_id)
            if entry is not None and entry[0] is stub and not entry[1].broken:
                return entry[1]
            if entry is not None:
                if entry[1].unimplemented:
                    self._unary_only.add(server_id)
                    del self._streams[server_id]
                    return None
                entry[1].close()
            opened = PeerStream(stub)
            self._streams[server_id] = (stub, opened)
            return opened

    def forward(
        self,
        server_id: str,
        address: str,
        envelope: exchange_pb2.SignedEnvelope,
        *,
        timeout: float,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> exchange_pb2.SignedEnvelope:
        """Send a request envelope to the provider server; returns its response envelope.

        Raises:
            CdxError: the provider's error (same class and code), or ``UnavailableError`` /
                ``DeadlineExceededError`` when it cannot be reached in time.
        """
        stub = self._pool.stub(server_id, address)
        stream = self._peer_stream(server_id, stub)
        if stream is not None:
            try:
                return stream.forward(envelope, timeout=timeout)
            except errors.UnavailableError:
                if not stream.unimplemented:
                    raise
                # An older peer without Exchange.Stream: nothing was processed; go unary.
        result: exchange_pb2.SignedEnvelope = rpc.invoke(
            stub.Forward, envelope, timeout=timeout, metadata=metadata or None
        )
        return result

    def close(self) -> None:
        with self._lock:
            for _, stream in self._streams.values():
                stream.close()
            self._streams.clear()
        self._pool.close()


class BackendPool:
    """``DataProvider`` stubs of this agency's backends (plaintext on loopback by default).

    ``dependencies`` (by address) are told whether each call reached its backend.
    """

    def __init__(
        self,
        identity: rpc.TlsIdentity | None = None,
        *,
        dependencies: Mapping[str, Dependency] | None = None,
    ) -> None:
        self._pool = _Pool(identity, exchange_pb2_grpc.DataProviderStub)
        self._dependencies = dict(dependencies or {})

    def fetch(
        self, address: str, request: exchange_pb2.FetchRequest, *, timeout: float
    ) -> exchange_pb2.FetchResponse:
        """Call the backend at ``address``.

        Raises:
            NotFoundError: the backend knows no such subject.
            BackendUnavailableError: it could not be reached, timed out or failed.
        """
        stub = self._pool.stub(address, address)
        dependency = self._dependencies.get(address)
        try:
            response: exchange_pb2.FetchResponse = stub.Fetch(request, timeout=timeout)
        except grpc.RpcError as exc:
            error = rpc.error_from_rpc(exc)
            if isinstance(error, errors.NotFoundError):
                if dependency is not None:
                    dependency.succeeded()  # it answered: no such subject
                raise errors.NotFoundError("the provider holds no data for this subject") from exc
            if dependency is not None:
                dependency.failed(error.code)
            if isinstance(error, errors.UnavailableError):
                # A fresh channel for the next request: a failed one waits out gRPC's reconnect
                # backoff (up to minutes) even after the backend is back.
                self._pool.drop(address)
            if isinstance(error, errors.DeadlineExceededError):
                raise errors.BackendUnavailableError("the backend did not answer in time") from exc
            raise errors.BackendUnavailableError() from exc
        if dependency is not None:
            dependency.succeeded()
        return response

    def close(self) -> None:
        self._pool.close()
