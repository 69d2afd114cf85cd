"""``cdx.telemetry`` without sockets: off by default, spans and metrics once configured, W3C
trace context in and out, errors recorded by code only, the health check helpers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdx import errors, health, telemetry

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def configured() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure(
        component="test", server_id="VN:GOV:BCA:ss1", span_exporters=[spans],
        metric_readers=[reader], prometheus=True,
    )  # fmt: skip
    yield spans, reader
    telemetry.reset()


def _points(reader: InMemoryMetricReader) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(
                    dict(p.attributes or {}) for p in metric.data.data_points
                )
    return out


def test_telemetry_is_off_and_free_until_configured() -> None:
    telemetry.reset()
    assert not telemetry.tracing()
    assert not telemetry.metrics().enabled
    with telemetry.stage("provider.backend", server="x") as stage:
        stage.set("decision", "allow")
    assert telemetry.stage("a") is telemetry.stage("b")  # one shared no-op object
    # Off, the information system's trace context passes through untouched.
    assert telemetry.outgoing_trace(TRACEPARENT, "k=v") == (TRACEPARENT, "k=v")
    assert telemetry.remote_parent(TRACEPARENT) is None
    assert telemetry.current().prometheus_text() is None


def test_a_stage_is_a_span_and_a_latency_sample(
    configured: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, reader = configured
    with telemetry.stage("provider.backend", server="VN:GOV:BCA:ss1") as stage:
        stage.set("decision", "allow")
    (span,) = spans.get_finished_spans()
    assert span.name == "cdx.provider.backend"
    assert span.attributes == {"cdx.server": "VN:GOV:BCA:ss1", "cdx.decision": "allow"}
    assert span.resource.attributes["cdx.server_id"] == "VN:GOV:BCA:ss1"
    points = _points(reader)
    assert {"stage": "provider.backend", "server": "VN:GOV:BCA:ss1"} in points["cdx.stage.duration"]


def test_a_failed_stage_records_the_stable_code_never_the_message(
    configured: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, _ = configured
    with pytest.raises(errors.ConsentRevokedError), telemetry.stage("consent.check"):
        raise errors.ConsentRevokedError("consent of 079090000001 revoked")
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["cdx.error_code"] == "consent_revoked"
    assert span.status.description == "consent_revoked"
    assert not span.events  # no exception event with message or stack trace
    assert "079090000001" not in repr(span.to_json())


def test_trace_context_continues_across_the_envelope(
    configured: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, _ = configured
    caller = telemetry.remote_parent(TRACEPARENT)
    assert caller is not None
    with telemetry.stage("consumer.query", parent=caller):
        traceparent, _ = telemetry.outgoing_trace(TRACEPARENT)
    assert traceparent.split("-")[1] == TRACEPARENT.split("-")[1]
    assert traceparent != TRACEPARENT  # the consumer's own span, not the caller's
    with telemetry.stage("provider.forward", parent=telemetry.remote_parent(traceparent)):
        pass
    consumer, provider = spans.get_finished_spans()
    assert provider.parent is not None and consumer.context is not None
    assert provider.parent.span_id == consumer.context.span_id
    assert {s.context.trace_id for s in (consumer, provider) if s.context} == {
        int(TRACEPARENT.split("-")[1], 16)
    }
    assert telemetry.remote_parent("garbage") is None


def test_exchange_counter_and_gauges_carry_only_the_labels_given(
    configured: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    _, reader = configured
    telemetry.metrics().exchange(
        server="VN:GOV:GDT:ss1", role="provider", allowed=False, reason="consent_missing",
        client="VN:GOV:VSS:benefits", service="VN:GOV:GDT:income/income/v1",
    )  # fmt: skip
    remove = telemetry.observe("cdx.outbox.depth", lambda: [(3.0, {"server": "VN:GOV:GDT:ss1"})])
    try:
        points = _points(reader)
        assert points["cdx.exchanges"] == [
            {
                "server": "VN:GOV:GDT:ss1",
                "role": "provider",
                "decision": "deny",
                "reason": "consent_missing",
                "client": "VN:GOV:VSS:benefits",
                "service": "VN:GOV:GDT:income/income/v1",
            }
        ]
        assert points["cdx.outbox.depth"] == [{"server": "VN:GOV:GDT:ss1"}]
        text = telemetry.current().prometheus_text() or b""
        assert b'cdx_exchanges_total{client="VN:GOV:VSS:benefits"' in text
        assert b'cdx_outbox_depth{server="VN:GOV:GDT:ss1"} 3.0' in text
    finally:
        remove()
    assert "cdx.outbox.depth" not in _points(reader)


def test_unknown_exporter_is_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        telemetry.TelemetrySettings(exporter="jaeger")
    settings = telemetry.TelemetrySettings.from_env(
        {"CDX_TELEMETRY": "otlp", "CDX_OTLP_ENDPOINT": "http://c:4317", "CDX_HEALTH_LISTEN": ":1"}
    )
    assert (settings.tracing, settings.metrics, settings.otlp_endpoint) == (
        True,
        True,
        "http://c:4317",
    )


def test_health_checks_report_codes() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)

    def expired(_now: datetime) -> None:
        raise errors.ConfExpiredError()

    def broken(_now: datetime) -> str | None:
        raise RuntimeError("detail that must not show")

    results = health.evaluate(
        [
            health.conf_check("conf", expired),
            health.problem_check("witness", lambda: "forked", "witness_alarm"),
            health.problem_check("quiet", lambda: None),
            health.Check("broken", broken),
        ],
        now,
    )
    assert results == {
        "conf": "conf_expired",
        "witness": "witness_alarm",
        "quiet": "ok",
        "broken": "check_failed",
    }


#: Every public name ``cdx.telemetry`` had as one module; components and tests use them through
#: the facade, so the split into a package must not lose one.
FACADE_NAMES = (
    "ENVIRONMENT", "EXPORTERS", "GAUGES", "QUIET_LOGGERS", "STAGE_BUCKETS", "JsonFormatter",
    "Metrics", "Sample", "Source", "Telemetry", "TelemetrySettings", "add_cli_arguments",
    "annotate", "configure", "configure_logging", "current", "envelope_parent",
    "grpc_server_interceptors", "instrument_channel", "mark", "metrics", "observe",
    "outgoing_trace", "remote_parent", "reset", "stage", "tracing",
)  # fmt: skip


def test_the_telemetry_facade_keeps_every_public_name() -> None:
    missing = [name for name in FACADE_NAMES if not hasattr(telemetry, name)]
    assert not missing
    assert set(FACADE_NAMES) <= set(telemetry.__all__)
    assert callable(telemetry.metrics) and not telemetry.metrics().enabled  # the function
