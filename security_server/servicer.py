"""Thin gRPC servicers: authenticate the caller, hand over to the consumer or provider logic."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

import grpc
from cryptography import x509

from cdx import errors, pki, rpc
from cdx.v1 import exchange_pb2, exchange_pb2_grpc
from security_server.config import SecurityServerConfig
from security_server.consumer import Consumer
from security_server.provider import Provider
from security_server.streaming import ProviderStreams

CLIENT_URI_PREFIX = "urn:cdx:client:"
_CACHE_LIMIT = 256


class _CertCache:
    """Parsed peer certificates by PEM bytes (peers reuse one certificate for every call)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._certs: dict[bytes, tuple[x509.Certificate, str]] = {}

    def get(self, context: grpc.ServicerContext) -> tuple[x509.Certificate, str] | None:
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            return None
        pem = pems[0]
        found = self._certs.get(pem)
        if found is None:
            cert = x509.load_pem_x509_certificate(pem)
            found = (cert, pki.fingerprint(cert))
            with self._lock:
                if len(self._certs) >= _CACHE_LIMIT:
                    self._certs.clear()
                self._certs[pem] = found
        return found


class ExchangeServicer(exchange_pb2_grpc.ExchangeServicer):  # type: ignore[misc]
    """``Exchange.Forward`` and ``Exchange.Stream``: the provider endpoint peers call over
    mutual TLS. Stream items run on ``executor`` (``Forward`` on the server's own pool)."""

    def __init__(self, provider: Provider, executor: Executor) -> None:
        self._provider = provider
        self._certs = _CertCache()
        self._streams = ProviderStreams(provider.forward, executor)

    def Forward(
        self, request: exchange_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> exchange_pb2.SignedEnvelope:
        peer = self._certs.get(context)
        return self._provider.forward(request, peer[0] if peer else None)

    def Stream(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[exchange_pb2.ExchangeBatch]:
        peer = self._certs.get(context)
        return self._streams.serve(request_iterator, peer[0] if peer else None, context)


class GatewayServicer(exchange_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    """``Gateway.Query`` for local information systems: client certificate or API token."""

    def __init__(self, consumer: Consumer, config: SecurityServerConfig) -> None:
        self._consumer = consumer
        self._config = config
        self._certs = _CertCache()

    def authenticate(self, context: grpc.ServicerContext) -> tuple[str, tuple[str, int] | None]:
        """The client subsystem the caller proved to be, and its certificate (fingerprint,
        serial) when it used one (the consumer checks revocation against global conf).

        Raises:
            UnauthenticatedError: neither an information-system certificate nor a known token.
        """
        peer = self._certs.get(context)
        if peer is not None:
            cert, fingerprint = peer
            clients = [u for u in pki.certificate_uris(cert) if u.startswith(CLIENT_URI_PREFIX)]
            if len(clients) != 1:
                raise errors.UnauthenticatedError("not an information-system certificate")
            subsystem = urllib.parse.unquote(clients[0][len(CLIENT_URI_PREFIX) :])
            return subsystem, (fingerprint, cert.serial_number)
        token = rpc.bearer_token(context)
        if token:
            found = self._config.subsystem_for_token(token)
            if found is not None:
                return found, None
        raise errors.UnauthenticatedError("a client certificate or API token is required")

    def Query(
        self, request: exchange_pb2.QueryRequest, context: grpc.ServicerContext
    ) -> exchange_pb2.QueryResponse:
        client, certificate = self.authenticate(context)
        traceparent = tracestate = ""
        for key, value in context.invocation_metadata():
            if key == "traceparent" and isinstance(value, str):
                traceparent = value[:128]
            elif key == "tracestate" and isinstance(value, str):
                tracestate = value[:512]
        return self._consumer.query(
            client,
            request,
            certificate=certificate,
            traceparent=traceparent,
            tracestate=tracestate,
        )
