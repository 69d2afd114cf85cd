"""gRPC servers and channels with mutual TLS, and the one mapping of CDX errors to gRPC status.

Every CDX server is built with ``create_server``: mutual TLS with certificates the registry
issued (unless the server is made for callers without one), message-size limits, one keepalive
policy shared with every channel ``secure_channel`` opens (``KeepalivePolicy``), the standard
gRPC health service, and ``ErrorInterceptor``, which turns a ``CdxError`` into its gRPC status
with the stable code in trailing metadata (``cdx-error-code``) and hides anything else behind a
correlation id (the stack trace stays in the server log). Clients turn a failed call back into
the matching ``CdxError`` with ``error_from_rpc`` or call through ``invoke``.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cdx import errors, telemetry

__all__ = [
    "CORRELATION_KEY",
    "ERROR_CODE_KEY",
    "KEEPALIVE",
    "MAX_MESSAGE_BYTES",
    "RECONNECT",
    "ErrorInterceptor",
    "KeepalivePolicy",
    "TlsIdentity",
    "abort_with",
    "add_port",
    "bearer_token",
    "create_server",
    "error_from_rpc",
    "invoke",
    "mark_serving",
    "peer_certificate",
    "secure_channel",
]

log = logging.getLogger(__name__)

#: Largest message any CDX endpoint accepts or sends (DESIGN §9: limits on untrusted sizes).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
ERROR_CODE_KEY = "cdx-error-code"
CORRELATION_KEY = "cdx-correlation-id"

T = TypeVar("T")


@dataclass(frozen=True)
class TlsIdentity:
    """A certificate chain and key for mutual TLS, plus the CA that peers must chain to.

    ``key_pem`` is the unencrypted PKCS#8 key held in memory only (gRPC core needs it so);
    on disk it stays encrypted (``cdx.crypto.save_private_key``).
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class KeepalivePolicy:
    """One keepalive policy for both ends of every CDX connection (threat model T193).

    CDX keeps channels open and mostly idle between bursts (exchange streams between security
    servers, the consent change feed, audit shipping and witnessing). Clients ping an idle
    connection every ``interval_ms`` and drop it when a ping goes unanswered for
    ``timeout_ms``, so a dead peer or a middlebox that forgot the flow is noticed. Servers accept
    pings at half that interval (timer jitter is not abuse): with gRPC's server default (one
    ping per five minutes without data, two strikes) every idle client would be sent
    ``GOAWAY ENHANCE_YOUR_CALM "too_many_pings"`` and reconnect. Servers ping their own idle
    clients at twice the interval, to let go of dead ones.
    """

    interval_ms: int = 30_000
    timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        if not 0 < self.timeout_ms < self.interval_ms:
            raise ValueError("a keepalive timeout must be positive and below the interval")

    def client_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.keepalive_time_ms", self.interval_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def server_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.keepalive_time_ms", 2 * self.interval_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", self.interval_ms // 2),
            ("grpc.http2.max_ping_strikes", 2),
        ]


#: The policy every server and channel uses unless a test passes a shorter one.
KEEPALIVE = KeepalivePolicy()


#: A peer back from an outage is used again within seconds: gRPC's default reconnect backoff
#: grows to two minutes, which would keep a recovered audit log, consent service or backend
#: unused long after it answers its health probe again.
RECONNECT: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


def _options(
    keepalive: Sequence[tuple[str, Any]], extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        *keepalive,
        *extra,
    ]


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Applies the ``cdx.errors`` status table to every handler of a server."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=_wrap_unary(handler.unary_unary, method),
                request_deserializer=deserializer,
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=_wrap_stream(handler.unary_stream, method),
                request_deserializer=deserializer,
            )
        return handler


class _Undecodable:
    """Stands in for a request whose bytes did not parse (e.g. nested deeper than protobuf's
    recursion limit), so that the caller gets ``malformed`` instead of gRPC's uncoded
    "Exception deserializing request!"."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return _UNDECODABLE

    return deserialize


def _check_decoded(request: Any) -> None:
    if request is _UNDECODABLE:
        raise errors.MalformedError("the request does not parse")


def abort_with(context: grpc.ServicerContext, exc: BaseException, method: str = "") -> None:
    """Abort the call with the status and stable code for ``exc`` (never a stack trace)."""
    if isinstance(exc, errors.CdxError):
        context.set_trailing_metadata(((ERROR_CODE_KEY, exc.code),))
        context.abort(exc.status, f"{exc.code}: {exc.message}")
    correlation = uuid.uuid4().hex
    log.error("internal error in %s (correlation id %s)", method, correlation, exc_info=exc)
    context.set_trailing_metadata(((ERROR_CODE_KEY, "internal"), (CORRELATION_KEY, correlation)))
    context.abort(
        grpc.StatusCode.INTERNAL, f"internal: internal error (correlation id {correlation})"
    )


def _fail(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    """Abort the call for ``exc``; a handler's own ``context.abort()`` passes through."""
    if not isinstance(exc, errors.CdxError) and _is_abort(exc, context):
        raise exc
    abort_with(context, exc, method)


def _wrap_unary(fn: Callable[[Any, Any], Any], method: str) -> Callable[[Any, Any], Any]:
    def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            _check_decoded(request)
            return fn(request, context)
        except Exception as exc:
            _fail(context, exc, method)
        return None  # unreachable: abort raises

    return wrapper


def _wrap_stream(fn: Callable[[Any, Any], Iterator[Any]], method: str) -> Callable[[Any, Any], Any]:
    def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            _check_decoded(request)
            yield from fn(request, context)
        except Exception as exc:
            _fail(context, exc, method)

    return wrapper


def _is_abort(exc: Exception, context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after recording the status; let it through.
    code = getattr(context, "code", None)
    return type(exc) is Exception and callable(code) and code() is not None


#: Whether each server ``create_server`` made asks its TLS clients for a certificate.
_CLIENT_AUTH: weakref.WeakKeyDictionary[grpc.Server, bool] = weakref.WeakKeyDictionary()


def create_server(
    identity: TlsIdentity | None,
    *,
    max_workers: int = 32,
    require_client_auth: bool = True,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    keepalive: KeepalivePolicy = KEEPALIVE,
) -> tuple[grpc.Server, health.HealthServicer]:
    """A gRPC server with mTLS (when ``identity`` is given), limits, health and error mapping.

    ``require_client_auth`` is the default of every port ``add_port`` opens on it: mutual TLS
    unless the server is made for callers without a certificate (citizens on the consent
    service's public port). Call ``add_port(server, address, identity)`` to listen; returns the
    server and its health servicer (set ``""`` to SERVING once started).
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cdx-rpc"),
        # Tracing (when on) is outermost, so its server span covers the error mapping too.
        interceptors=[*telemetry.grpc_server_interceptors(), ErrorInterceptor(), *interceptors],
        options=_options(keepalive.server_options(), [("grpc.so_reuseport", 0)]),
        maximum_concurrent_rpcs=max_workers * 64,
    )
    _CLIENT_AUTH[server] = require_client_auth
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, health_servicer


def add_port(
    server: grpc.Server,
    address: str,
    identity: TlsIdentity | None,
    *,
    require_client_auth: bool | None = None,
) -> int:
    """Listen on ``address`` (``host:0`` picks a free port); returns the bound port.

    ``require_client_auth`` defaults to the server's (``create_server``); a port may say
    otherwise (a security server's API-token gateway takes no client certificate).

    Raises:
        UnavailableError: the address cannot be bound.
    """
    if require_client_auth is None:
        require_client_auth = _CLIENT_AUTH.get(server, True)
    if identity is None:
        port = server.add_insecure_port(address)
    else:
        creds = grpc.ssl_server_credentials(
            [(identity.key_pem, identity.cert_pem)],
            root_certificates=identity.ca_pem,
            require_client_auth=require_client_auth,
        )
        port = server.add_secure_port(address, creds)
    if port == 0:
        raise errors.UnavailableError(f"cannot listen on {address}")
    return int(port)


def mark_serving(health_servicer: health.HealthServicer, serving: bool = True) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    health_servicer.set("", status)


def secure_channel(
    address: str,
    identity: TlsIdentity | None,
    ca_pem: bytes | None = None,
    *,
    server_name: str | None = None,
    keepalive: KeepalivePolicy = KEEPALIVE,
) -> grpc.Channel:
    """A long-lived channel; mutual TLS when ``identity`` is given, server-auth TLS with
    only ``ca_pem``, and plaintext only when neither is given (local backends in tests)."""
    extra: list[tuple[str, Any]] = list(RECONNECT)
    if server_name:
        extra.append(("grpc.ssl_target_name_override", server_name))
    options = _options(keepalive.client_options(), extra)
    if identity is None and ca_pem is None:
        return telemetry.instrument_channel(grpc.insecure_channel(address, options=options))
    creds = grpc.ssl_channel_credentials(
        root_certificates=identity.ca_pem if identity else ca_pem,
        private_key=identity.key_pem if identity else None,
        certificate_chain=identity.cert_pem if identity else None,
    )
    return telemetry.instrument_channel(grpc.secure_channel(address, creds, options=options))


def peer_certificate(context: grpc.ServicerContext) -> x509.Certificate | None:
    """The verified TLS client certificate of the caller, or ``None``."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert")
    if not pems:
        return None
    return x509.load_pem_x509_certificate(pems[0])


def bearer_token(context: grpc.ServicerContext) -> str | None:
    """The ``authorization: Bearer ...`` token of the call, if any."""
    for key, value in context.invocation_metadata():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


def error_from_rpc(exc: grpc.RpcError) -> errors.CdxError:
    """Rebuild the ``CdxError`` a peer raised from its status and stable code."""
    code = None
    metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == ERROR_CODE_KEY:
            code = value
    details = exc.details() if hasattr(exc, "details") else ""
    message = details.split(": ", 1)[1] if details and ": " in details else (details or None)
    if code is None:
        status = exc.code() if hasattr(exc, "code") else None
        if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return errors.UnavailableError(f"peer unavailable: {details}")
        if status == grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.DeadlineExceededError()
        if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return errors.LimitExceededError(f"peer refused: {details}")
        return errors.InternalError(f"peer failed: {details}")
    return errors.class_for_code(code)(message)


def invoke(fn: Callable[..., T], request: Any, **kwargs: Any) -> T:
    """Call a stub method, turning a failed call into its ``CdxError``."""
    try:
        return fn(request, **kwargs)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc
