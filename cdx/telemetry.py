"""Logging, tracing and metrics shared by every component; a no-op until ``configure`` is called.

Components instrument themselves through four calls that cost one attribute check while
telemetry is off (the default), so the exchange hot path does not pay for it:

- ``stage(name, server=...)``: a span ``cdx.<name>`` and a sample of the stage-latency
  histogram, as a context manager;
- ``metrics()``: the ``Metrics`` facade (exchanges by decision and reason, consent-cache
  lookups) and ``observe(gauge, source)`` for gauges read at collection time (outbox depth,
  global-conf age, certificate expiry, log size, ...);
- ``outgoing_trace`` / ``remote_parent`` / ``envelope_parent``: W3C trace context into and out of
  the signed envelope header, so one trace spans both agencies' security servers;
- ``grpc_server_interceptors`` / ``instrument_channel``: the OpenTelemetry gRPC instrumentation,
  added by ``cdx.rpc`` to the servers and channels created while tracing is on.

``configure(settings, component=...)`` starts the exporters: OTLP (gRPC, configurable
endpoint), console, or none, plus a Prometheus registry that ``cdx.health`` serves at
``/metrics``. Tests pass in-memory exporters and readers instead.

Telemetry never carries personal data: span names are fixed strings, and attributes and metric
labels hold identifiers of agencies, servers, services, purposes, decisions and reason codes
only, never a national id, a name, a payload value, a token or key material. Errors are
recorded by their stable code, never by message or stack trace. W3C baggage is not propagated
(an information system's baggage would otherwise travel on to the other agency).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cdx import errors

if TYPE_CHECKING:  # pragma: no cover
    import grpc
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

__all__ = [
    "ENVIRONMENT",
    "EXPORTERS",
    "GAUGES",
    "JsonFormatter",
    "Metrics",
    "Telemetry",
    "TelemetrySettings",
    "add_cli_arguments",
    "annotate",
    "configure",
    "configure_logging",
    "current",
    "envelope_parent",
    "grpc_server_interceptors",
    "instrument_channel",
    "mark",
    "metrics",
    "observe",
    "outgoing_trace",
    "remote_parent",
    "reset",
    "stage",
    "tracing",
]

EXPORTERS = ("none", "console", "otlp")

#: Environment variables the ``cdx`` command reads (flags win over them).
ENVIRONMENT = {
    "CDX_TELEMETRY": "exporter of traces and metrics: none (default), console or otlp",
    "CDX_OTLP_ENDPOINT": "OTLP/gRPC endpoint, e.g. http://otel-collector:4317 "
    "(default: $OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4317)",
    "CDX_HEALTH_LISTEN": "HOST:PORT of the HTTP /healthz, /livez and /metrics endpoint",
    "CDX_LOG_JSON": "1 to write logs as JSON lines (like --log-json)",
}

#: Upper bounds (seconds) of the stage-latency histogram: 0.5 ms to 10 s.
STAGE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Gauges read at collection time from sources registered with ``observe``:
#: OpenTelemetry name -> (unit, description). Prometheus shows ``cdx_outbox_depth``,
#: ``cdx_outbox_oldest_age_seconds`` and so on (dots become underscores, ``s`` -> ``_seconds``).
GAUGES: dict[str, tuple[str, str]] = {
    "cdx.outbox.depth": ("{record}", "access records the audit log has not accepted yet"),
    "cdx.outbox.oldest_age": ("s", "age of the oldest access record not yet shipped"),
    "cdx.globalconf.age": ("s", "age of the current global configuration"),
    "cdx.globalconf.expires_in": ("s", "time until the global configuration expires"),
    "cdx.globalconf.version": ("", "version of the current global configuration"),
    "cdx.certificate.expires_in": ("s", "time until a certificate expires"),
    "cdx.audit.log_size": ("{entry}", "entries in the audit log's committed tree"),
    "cdx.audit.checkpoint_age": ("s", "age of the audit log's latest signed checkpoint"),
    "cdx.witness.alarm": ("", "1 while a witness has refused a checkpoint as inconsistent"),
    "cdx.witness.checkpoint_size": ("{entry}", "size of the last checkpoint a witness accepted"),
}

_PROPAGATOR = TraceContextTextMapPropagator()


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TelemetrySettings:
    """What an operator chose: exporter, OTLP endpoint and the health/metrics listen address."""

    exporter: str = "none"
    otlp_endpoint: str = ""
    health_listen: str = ""

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise errors.InvalidArgumentError(
                f"unknown telemetry exporter {self.exporter!r} (one of {', '.join(EXPORTERS)})"
            )

    @property
    def tracing(self) -> bool:
        return self.exporter != "none"

    @property
    def metrics(self) -> bool:
        """Metrics are kept when pushed (console, OTLP) or scraped (``/metrics``)."""
        return self.exporter != "none" or bool(self.health_listen)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if environ is None else environ
        return cls(
            exporter=env.get("CDX_TELEMETRY", "") or "none",
            otlp_endpoint=env.get("CDX_OTLP_ENDPOINT", ""),
            health_listen=env.get("CDX_HEALTH_LISTEN", ""),
        )

    @classmethod
    def from_args(cls, args: Any, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        """From the ``cdx`` flags of ``add_cli_arguments``, falling back to the environment."""
        base = cls.from_env(environ)
        return cls(
            exporter=getattr(args, "telemetry", None) or base.exporter,
            otlp_endpoint=getattr(args, "otlp_endpoint", None) or base.otlp_endpoint,
            health_listen=getattr(args, "health_listen", None) or base.health_listen,
        )


def add_cli_arguments(parser: Any) -> None:
    """The ``cdx`` options that choose exporters and the health endpoint (before COMMAND)."""
    parser.add_argument(
        "--telemetry",
        choices=EXPORTERS,
        help="export traces and metrics: none, console or otlp (default: $CDX_TELEMETRY or none)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="OTLP/gRPC endpoint (default: $CDX_OTLP_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    parser.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help="serve /healthz, /livez and /metrics over HTTP here (servers only; "
        "default: $CDX_HEALTH_LISTEN)",
    )


# --- the metrics facade --------------------------------------------------------------------------

Sample = tuple[float, Mapping[str, str]]
Source = Callable[[], Iterable[Sample]]

_sources_lock = threading.Lock()
_sources: dict[str, list[Source]] = {name: [] for name in GAUGES}


def observe(gauge: str, source: Source) -> Callable[[], None]:
    """Feed ``gauge`` (a name in ``GAUGES``) from ``source``, called at each collection.

    ``source`` returns ``(value, labels)`` pairs; labels name agencies, servers or certificate
    usages only. Returns a function that removes the source again (call it on stop).
    """
    if gauge not in GAUGES:
        raise ValueError(f"unknown gauge {gauge}")
    with _sources_lock:
        _sources[gauge].append(source)

    def remove() -> None:
        with _sources_lock:
            if source in _sources[gauge]:
                _sources[gauge].remove(source)

    return remove


def _gauge_callback(gauge: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    from opentelemetry.metrics import Observation

    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        with _sources_lock:
            sources = list(_sources[gauge])
        out: list[Observation] = []
        for source in sources:
            try:
                out.extend(Observation(value, dict(labels)) for value, labels in source())
            except Exception as exc:  # a failing source must not break the whole scrape
                code = exc.code if isinstance(exc, errors.CdxError) else type(exc).__name__
                log.debug("gauge %s source failed: %s", gauge, code)
        return out

    return callback


class Metrics:
    """The instruments named in the operator guide; every method is a no-op when disabled."""

    enabled = False

    def exchange(
        self,
        *,
        server: str,
        role: str,
        allowed: bool,
        reason: str,
        client: str = "",
        service: str = "",
    ) -> None:
        """Count one exchange decision (``cdx_exchanges_total``)."""

    def stage_seconds(self, stage: str, seconds: float, server: str = "") -> None:
        """Record one stage's latency (``cdx_stage_duration_seconds``)."""

    def consent_cache(self, *, hit: bool, server: str = "") -> None:
        """Count one consent-cache lookup (``cdx_consent_cache_lookups_total``)."""


class _RecordingMetrics(Metrics):
    enabled = True

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("cdx")
        self._exchanges = meter.create_counter(
            "cdx.exchanges", unit="", description="exchange decisions by role, decision, reason"
        )
        self._stages = meter.create_histogram(
            "cdx.stage.duration",
            unit="s",
            description="latency of each stage of the exchange and the audit log",
            explicit_bucket_boundaries_advisory=STAGE_BUCKETS,
        )
        self._consent = meter.create_counter(
            "cdx.consent.cache.lookups",
            unit="",
            description="consent decisions looked up in a security server's cache (hit/miss)",
        )
        for name, (unit, description) in GAUGES.items():
            meter.create_observable_gauge(
                name, callbacks=[_gauge_callback(name)], unit=unit, description=description
            )

    def exchange(
        self,
        *,
        server: str,
        role: str,
        allowed: bool,
        reason: str,
        client: str = "",
        service: str = "",
    ) -> None:
        self._exchanges.add(
            1,
            {
                "server": server,
                "role": role,
                "decision": "allow" if allowed else "deny",
                "reason": reason,
                "client": client,
                "service": service,
            },
        )

    def stage_seconds(self, stage: str, seconds: float, server: str = "") -> None:
        self._stages.record(seconds, {"stage": stage, "server": server})

    def consent_cache(self, *, hit: bool, server: str = "") -> None:
        self._consent.add(1, {"result": "hit" if hit else "miss", "server": server})


# --- the process's telemetry ---------------------------------------------------------------------


class Telemetry:
    """The configured providers of this process (``current()``); ``shutdown()`` flushes them."""

    def __init__(
        self,
        *,
        component: str = "",
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        prometheus_registry: CollectorRegistry | None = None,
    ) -> None:
        self.component = component
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.prometheus_registry = prometheus_registry
        self.tracer: trace.Tracer | None = (
            tracer_provider.get_tracer("cdx") if tracer_provider is not None else None
        )
        self.metrics: Metrics = (
            _RecordingMetrics(meter_provider) if meter_provider is not None else Metrics()
        )
        #: Whether ``stage`` does anything at all (the hot path tests only this).
        self.active = self.tracer is not None or self.metrics.enabled

    def prometheus_text(self) -> bytes | None:
        """The Prometheus exposition of every metric, or ``None`` without a registry."""
        if self.prometheus_registry is None:
            return None
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.prometheus_registry))

    def force_flush(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


_DISABLED = Telemetry()
_state: Telemetry = _DISABLED


def current() -> Telemetry:
    return _state


def metrics() -> Metrics:
    """The metrics facade (no-op while telemetry is off)."""
    return _state.metrics


def tracing() -> bool:
    return _state.tracer is not None


def _resource(component: str, server_id: str) -> Any:
    import socket
    from importlib import metadata

    from opentelemetry.sdk.resources import Resource

    try:
        version = metadata.version("cdx")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "0"
    attributes: dict[str, str] = {
        "service.name": f"cdx-{component}" if component else "cdx",
        "service.namespace": "cdx",
        "service.version": version,
        "service.instance.id": server_id or f"{socket.gethostname()}:{os.getpid()}",
        "cdx.component": component,
    }
    if server_id:
        attributes["cdx.server_id"] = server_id
    # Resource.create merges $OTEL_RESOURCE_ATTRIBUTES (e.g. deployment.environment=prod).
    return Resource.create(attributes)


def configure(
    settings: TelemetrySettings | None = None,
    *,
    component: str,
    server_id: str = "",
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    prometheus: bool | None = None,
) -> Telemetry:
    """Start tracing and metrics for this process and make them ``current()``.

    ``settings.exporter`` picks OTLP (batching, to ``settings.otlp_endpoint``), console (stderr)
    or none; ``span_exporters`` / ``metric_readers`` add more (tests pass in-memory ones; span
    exporters given here export synchronously). A Prometheus registry is kept when
    ``prometheus`` is true (default: when ``settings.health_listen`` is set).

    Call it once per process, before servers and channels are created (their gRPC
    instrumentation is decided then). A later call replaces the previous configuration.

    Raises:
        InvalidArgumentError: an unknown exporter.
    """
    global _state
    settings = settings or TelemetrySettings()
    want_prometheus = bool(settings.health_listen) if prometheus is None else prometheus
    resource = _resource(component, server_id)

    tracer_provider: TracerProvider | None = None
    if settings.tracing or span_exporters:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        tracer_provider = TracerProvider(resource=resource)
        for exporter in span_exporters:
            tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        if settings.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            tracer_provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint or None))
            )
        elif settings.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            tracer_provider.add_span_processor(
                BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
            )

    readers: list[MetricReader] = list(metric_readers)
    registry: CollectorRegistry | None = None
    if want_prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=True)
        readers.append(PrometheusMetricReader(registry=registry, scope_info_enabled=False))
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=settings.otlp_endpoint or None)
            )
        )
    elif settings.exporter == "console":
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            PeriodicExportingMetricReader,
        )

        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))

    meter_provider: MeterProvider | None = None
    if readers:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.sdk.metrics import MeterProvider

        meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        # Instruments made through the global API (e.g. the audit log's counters) report here.
        # The global provider can be set once per process; later calls keep the first.
        if not _global_meter_set.is_set():
            _global_meter_set.set()
            otel_metrics.set_meter_provider(meter_provider)

    if tracer_provider is not None:
        from opentelemetry import propagate

        # W3C trace context only: no baggage travels between agencies.
        propagate.set_global_textmap(_PROPAGATOR)

    previous = _state
    _state = Telemetry(
        component=component,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        prometheus_registry=registry,
    )
    if previous is not _DISABLED:
        previous.shutdown()
    return _state


_global_meter_set = threading.Event()


def reset() -> None:
    """Flush and stop the current telemetry; back to the no-op default."""
    global _state
    previous, _state = _state, _DISABLED
    if previous is not _DISABLED:
        previous.shutdown()


# --- stages and spans ----------------------------------------------------------------------------


class _NullStage:
    """What ``stage`` returns while telemetry is off: does nothing, costs nothing."""

    __slots__ = ()

    def __enter__(self) -> _NullStage:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: str | int | bool) -> None:
        return None


_NULL_STAGE = _NullStage()


class _Stage:
    __slots__ = ("_attributes", "_name", "_parent", "_server", "_span", "_start", "_tel", "_token")

    def __init__(
        self,
        tel: Telemetry,
        name: str,
        server: str,
        parent: otel_context.Context | None,
        attributes: dict[str, str],
    ) -> None:
        self._tel = tel
        self._name = name
        self._server = server
        self._parent = parent
        self._attributes = attributes
        self._span: trace.Span | None = None
        self._token: object = None
        self._start = 0.0

    def __enter__(self) -> _Stage:
        tracer = self._tel.tracer
        if tracer is not None:
            attributes = {f"cdx.{k}": v for k, v in self._attributes.items() if v}
            if self._server:
                attributes["cdx.server"] = self._server
            span = tracer.start_span(
                f"cdx.{self._name}", context=self._parent, attributes=attributes
            )
            self._span = span
            self._token = otel_context.attach(trace.set_span_in_context(span, self._parent))
        self._start = time.perf_counter()
        return self

    def set(self, key: str, value: str | int | bool) -> None:
        """Add an attribute (``cdx.<key>``) to the stage's span; identifiers and codes only."""
        if self._span is not None:
            self._span.set_attribute(f"cdx.{key}", value)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        span = self._span
        if span is not None:
            if exc is not None:
                # The stable code only: messages and stack traces stay out of telemetry.
                code = exc.code if isinstance(exc, errors.CdxError) else type(exc).__name__
                span.set_attribute("cdx.error_code", code)
                span.set_status(trace.Status(trace.StatusCode.ERROR, code))
            otel_context.detach(self._token)  # type: ignore[arg-type]
            span.end()
        self._tel.metrics.stage_seconds(self._name, elapsed, self._server)


def stage(
    name: str,
    *,
    server: str = "",
    parent: otel_context.Context | None = None,
    **attributes: str,
) -> _Stage | _NullStage:
    """Time one stage: span ``cdx.<name>`` (child of ``parent`` or the current span) and a
    ``cdx_stage_duration_seconds{stage=name}`` sample. ``attributes`` become ``cdx.<key>``
    span attributes: agency, service, purpose or message ids and codes, never personal data.
    """
    tel = _state
    if not tel.active:
        return _NULL_STAGE
    return _Stage(tel, name, server, parent, attributes)


def mark(name: str, started: float, *, server: str = "") -> None:
    """Close stage ``name`` that began at ``started`` (``time.perf_counter()``) without its
    own span: a histogram sample and an event ``cdx.<name>`` on the current span. For stages
    whose end is not the end of a block (e.g. the provider's checks before the backend call)."""
    tel = _state
    if not tel.active:
        return
    tel.metrics.stage_seconds(name, time.perf_counter() - started, server)
    if tel.tracer is not None:
        trace.get_current_span().add_event(f"cdx.{name}")


def annotate(key: str, value: str | int | bool) -> None:
    """Set ``cdx.<key>`` on the current span (identifiers and codes only)."""
    if _state.tracer is not None:
        trace.get_current_span().set_attribute(f"cdx.{key}", value)


# --- trace context across the exchange -----------------------------------------------------------


def outgoing_trace(traceparent: str = "", tracestate: str = "") -> tuple[str, str]:
    """The W3C ``traceparent``/``tracestate`` to put into an envelope header.

    With tracing on: the current span's context (a child of the caller's trace when the
    information system sent one). Off: the values the caller sent, passed through unchanged.
    """
    if _state.tracer is None:
        return traceparent, tracestate
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", traceparent), carrier.get("tracestate", tracestate)


def remote_parent(traceparent: str, tracestate: str = "") -> otel_context.Context | None:
    """The context to continue a trace received in an envelope header, or ``None`` to keep
    the current one (tracing off, no or invalid context, or already in that trace)."""
    if _state.tracer is None or not traceparent:
        return None
    carrier = {"traceparent": traceparent[:128]}
    if tracestate:
        carrier["tracestate"] = tracestate[:512]
    ctx = _PROPAGATOR.extract(carrier)
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
    if _state.tracer is None:
        return None
    from google.protobuf.message import DecodeError

    from cdx.v1 import exchange_pb2

    try:
        header = exchange_pb2.EnvelopeHeader.FromString(env.header)
    except (DecodeError, TypeError, ValueError):
        return None
    return remote_parent(header.trace.traceparent, header.trace.tracestate)


# --- gRPC instrumentation ------------------------------------------------------------------------

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
    if _state.tracer_provider is None:
        return []
    from opentelemetry.instrumentation.grpc import server_interceptor

    interceptor = server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_state.tracer_provider, filter_=_server_filter
    )
    return [interceptor]


def instrument_channel(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with the OpenTelemetry client interceptor while tracing is on: a client span
    per unary call and its ``traceparent`` in the call metadata."""
    if _state.tracer_provider is None:
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    interceptor = client_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_state.tracer_provider, filter_=_client_filter
    )
    intercepted: grpc.Channel = intercept_channel(channel, interceptor)  # type: ignore[no-untyped-call]
    return intercepted


# --- logging -------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace and span ids when a span is active."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if _state.component:
            entry["component"] = _state.component
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


#: Loggers kept at WARNING even with ``--verbose``: SQLAlchemy's INFO lines carry statement
#: parameters (national ids in register lookups) and HTTP client/server libraries log URLs.
QUIET_LOGGERS = ("sqlalchemy", "httpx", "httpcore", "urllib3", "uvicorn.access")


def configure_logging(*, verbose: bool = False, json_lines: bool = False) -> None:
    """Configure the root logger once for a CLI process (``$CDX_LOG_JSON=1`` also picks JSON)."""
    json_lines = json_lines or os.environ.get("CDX_LOG_JSON", "") not in ("", "0")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("cdx").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
