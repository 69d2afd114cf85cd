"""The process's telemetry: the configured tracer and meter providers (``current()``).

A no-op until ``configure()``; ``reset()`` flushes and goes back to the no-op default. Call
``configure`` once per process, before servers and channels are created (their gRPC
instrumentation is decided then).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from cdx.telemetry.instruments import Metrics, RecordingMetrics
from cdx.telemetry.settings import TelemetrySettings

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry

__all__ = ["Telemetry", "configure", "current", "metrics", "reset", "tracing"]


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
            RecordingMetrics(meter_provider) if meter_provider is not None else Metrics()
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
_global_meter_set = threading.Event()


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

        from cdx.telemetry.propagation import PROPAGATOR

        # W3C trace context only: no baggage travels between agencies.
        propagate.set_global_textmap(PROPAGATOR)

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


def reset() -> None:
    """Flush and stop the current telemetry; back to the no-op default."""
    global _state
    previous, _state = _state, _DISABLED
    if previous is not _DISABLED:
        previous.shutdown()
