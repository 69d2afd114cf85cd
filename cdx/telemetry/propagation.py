"""W3C trace context into and out of the signed envelope header, so one trace spans both
agencies' security servers. Only ``traceparent``/``tracestate``: W3C baggage is never
propagated (an information system's baggage would otherwise travel on to the other agency).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cdx.telemetry.providers import current

__all__ = ["PROPAGATOR", "envelope_parent", "outgoing_trace", "remote_parent"]

PROPAGATOR = TraceContextTextMapPropagator()


def outgoing_trace(traceparent: str = "", tracestate: str = "") -> tuple[str, str]:
    """The W3C ``traceparent``/``tracestate`` to put into an envelope header.

    With tracing on: the current span's context (a child of the caller's trace when the
    information system sent one). Off: the values the caller sent, passed through unchanged.
    """
    if current().tracer is None:
        return traceparent, tracestate
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", traceparent), carrier.get("tracestate", tracestate)


def remote_parent(traceparent: str, tracestate: str = "") -> otel_context.Context | None:
    """The context to continue a trace received in an envelope header, or ``None`` to keep
    the current one (tracing off, no or invalid context, or already in that trace)."""
    if current().tracer is None or not traceparent:
        return None
    carrier = {"traceparent": traceparent[:128]}
    if tracestate:
        carrier["tracestate"] = tracestate[:512]
    ctx = PROPAGATOR.extract(carrier)
    remote = trace.get_current_span(ctx).get_span_context()
    if not remote.is_valid:
        return None
    here = trace.get_current_span().get_span_context()
    if here.is_valid and here.trace_id == remote.trace_id:
        return None
    return ctx


def envelope_parent(env: Any) -> otel_context.Context | None:
    """``remote_parent`` of a ``SignedEnvelope``'s header (parsed before verification: the
    trace context only links telemetry, it decides nothing; the header is signed, so a
    verified request's trace is the consumer's own)."""
    if current().tracer is None:
        return None
    from google.protobuf.message import DecodeError

    from cdx.v1 import exchange_pb2

    try:
        header = exchange_pb2.EnvelopeHeader.FromString(env.header)
    except (DecodeError, TypeError, ValueError):
        return None
    return remote_parent(header.trace.traceparent, header.trace.tracestate)
