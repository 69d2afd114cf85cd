"""OpenTelemetry's gRPC instrumentation for the servers and channels ``cdx.rpc`` builds while
tracing is on: a server span per call (health checks and long-lived streams excluded) and a
client span per unary call with its ``traceparent`` in the call metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdx.telemetry.providers import current

if TYPE_CHECKING:  # pragma: no cover
    import grpc

__all__ = ["grpc_server_interceptors", "instrument_channel"]

_HEALTH_PREFIX = "/grpc.health.v1.Health/"
#: Calls that stay open for the life of a connection: a span over hours says nothing (each
#: exchange on ``Exchange.Stream`` gets its own spans from the envelope's trace context).
_LONG_LIVED = frozenset({"/cdx.v1.Exchange/Stream", "/cdx.v1.ConsentCheck/WatchChanges"})


def _server_filter(details: Any) -> bool:
    method = str(getattr(details, "method", ""))
    return not method.startswith(_HEALTH_PREFIX) and method not in _LONG_LIVED


def _client_filter(info: Any) -> bool:
    # Unary calls only: a traced server stream would hide the call object (cancel()) that
    # long-lived watchers such as the consent change feed rely on.
    if getattr(info, "is_server_stream", False) or getattr(info, "is_client_stream", False):
        return False
    return not str(getattr(info, "full_method", "")).startswith(_HEALTH_PREFIX)


def grpc_server_interceptors() -> list[grpc.ServerInterceptor]:
    """The OpenTelemetry server interceptor while tracing is on (else none): a server span per
    call, continuing the caller's ``traceparent`` metadata."""
    provider = current().tracer_provider
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import server_interceptor

    interceptor = server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=_server_filter
    )
    return [interceptor]


def instrument_channel(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with the OpenTelemetry client interceptor while tracing is on: a client span
    per unary call and its ``traceparent`` in the call metadata."""
    provider = current().tracer_provider
    if provider is None:
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    interceptor = client_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=_client_filter
    )
    intercepted: grpc.Channel = intercept_channel(channel, interceptor)  # type: ignore[no-untyped-call]
    return intercepted
