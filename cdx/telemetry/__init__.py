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

This package is the facade; each concern has its module: ``settings`` (what the operator
chose), ``providers`` (the configured tracer and meter providers), ``instruments`` (metrics and
gauges), ``spans`` (stages), ``propagation`` (trace context in the envelope),
``instrumentation`` (gRPC) and ``logs`` (log lines). Components import ``cdx.telemetry`` only.
"""

from __future__ import annotations

from cdx.telemetry.instrumentation import grpc_server_interceptors, instrument_channel
from cdx.telemetry.instruments import (
    GAUGES,
    STAGE_BUCKETS,
    Metrics,
    Sample,
    Source,
    observe,
)
from cdx.telemetry.logs import QUIET_LOGGERS, JsonFormatter, TextFormatter, configure_logging
from cdx.telemetry.propagation import envelope_parent, outgoing_trace, remote_parent
from cdx.telemetry.providers import Telemetry, configure, current, metrics, reset, tracing
from cdx.telemetry.settings import ENVIRONMENT, EXPORTERS, TelemetrySettings, add_cli_arguments
from cdx.telemetry.spans import annotate, mark, stage

__all__ = [
    "ENVIRONMENT",
    "EXPORTERS",
    "GAUGES",
    "QUIET_LOGGERS",
    "STAGE_BUCKETS",
    "JsonFormatter",
    "Metrics",
    "Sample",
    "Source",
    "Telemetry",
    "TelemetrySettings",
    "TextFormatter",
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
