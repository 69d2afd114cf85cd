"""Telemetry of a whole running instance: one trace across both agencies' security servers,
the metrics named in the operator guide on the Prometheus endpoint, and ``/healthz`` turning
unhealthy when the global configuration expires or a witness raises an alarm.

Real parts throughout: the instance of ``cdx up`` (registry, consent service, audit log, three
security servers with their witnesses and sample backends, mutual TLS on loopback) with
telemetry configured before it starts, as ``cdx --telemetry ... up`` does.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from audit.client import AuditClient
from audit.witness import Witness
from cdx import errors, health, telemetry
from cdx.clock import utcnow
from cdx.v1 import exchange_pb2
from security_server.backends.sample import CITIZENS
from stack.demo import Scenario, Story
from stack.provision import create_instance
from stack.runtime import RunningInstance, StackOptions, start_instance
from stack.topology import spec
from tests.waiting import eventually

pytestmark = pytest.mark.xdist_group("telemetry")

CITIZEN = CITIZENS[0]
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"
SOCIAL, TAX, POPULATION = spec("social"), spec("tax"), spec("population")
TRACE_ID = "5e1f0c8a9b7d4e3f8a2b1c0d9e8f7a6b"
CALLER_TRACEPARENT = f"00-{TRACE_ID}-1a2b3c4d5e6f7a8b-01"


class Env:
    def __init__(self, inst: RunningInstance, spans: InMemorySpanExporter) -> None:
        self.inst = inst
        self.spans = spans
        self.endpoint = health.HealthEndpoint(
            "127.0.0.1:0", inst.health_checks(), component="stack"
        )
        scenario = Scenario(inst, Story(io.StringIO()))
        scenario.consent_requested_and_approved()
        self.consent_id = scenario.consent_id

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.endpoint.url + path, timeout=5) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """Each test its own instance: some change it (a witness alarm), and telemetry is
    configured per process."""
    spans = InMemorySpanExporter()
    telemetry.configure(component="stack", span_exporters=[spans], prometheus=True)
    data = tmp_path / "data"
    try:
        create_instance(data)
        inst = start_instance(
            data, StackOptions(portal=False, checkpoint_interval=0.5, witness_interval=0.5)
        )
        try:
            e = Env(inst, spans)
            yield e
            e.endpoint.stop()
        finally:
            inst.stop()
    finally:
        telemetry.reset()


def _income_query(env: Env, metadata: tuple[tuple[str, str], ...] = ()) -> object:
    request = exchange_pb2.QueryRequest(
        client=SOCIAL.subsystem,
        service=TAX.service,
        subject=CITIZEN.id,
        purpose=PURPOSE,
        consent_id=env.consent_id,
    )
    return env.inst.gateway("social").Query(request, metadata=metadata, timeout=10)


def _attr(span: ReadableSpan, key: str) -> object:
    return (span.attributes or {}).get(key)


def test_one_trace_spans_both_security_servers_for_one_exchange(env: Env) -> None:
    env.spans.clear()
    # The information system's own trace (as its instrumented gRPC client sends it).
    with telemetry.stage("information-system", parent=telemetry.remote_parent(CALLER_TRACEPARENT)):
        response = _income_query(env)
    assert set(response.released_fields) == {"annual_income", "tax_year"}  # type: ignore[attr-defined]

    trace_id = int(TRACE_ID, 16)
    in_trace = [s for s in env.spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_name: dict[str, list[ReadableSpan]] = {}
    for s in in_trace:
        by_name.setdefault(s.name, []).append(s)

    (consumer,) = by_name["cdx.consumer.query"]
    (provider,) = by_name["cdx.provider.forward"]
    assert _attr(consumer, "cdx.server") == SOCIAL.server_id
    assert _attr(provider, "cdx.server") == TAX.server_id
    for span in (consumer, provider):
        assert _attr(span, "cdx.decision") == "allow"
        assert _attr(span, "cdx.service") == TAX.service
        assert _attr(span, "cdx.client") == SOCIAL.subsystem
    assert _attr(consumer, "cdx.message_id") == _attr(provider, "cdx.message_id")
    # The stages of the chain, each in the same trace.
    assert "cdx.consent.check" in by_name
    assert _attr(by_name["cdx.provider.backend"][0], "cdx.server") == TAX.server_id
    assert "cdx.exchange.forward" in by_name
    assert len(by_name["cdx.outbox.write"]) == 2  # durable record on each side
    assert "/cdx.v1.Gateway/Query" in by_name  # the gRPC instrumentation's server span
    assert "/cdx.v1.DataProvider/Fetch" in by_name
    # The provider's span hangs under the consumer's (continued from the signed envelope).
    spans_by_id = {s.context.span_id: s for s in in_trace}
    ancestor = provider
    while ancestor.parent is not None and ancestor.parent.span_id in spans_by_id:
        ancestor = spans_by_id[ancestor.parent.span_id]
        if ancestor is consumer:
            break
    assert ancestor is consumer, "the provider's span does not descend from the consumer's"


def test_a_refusal_is_traced_with_its_code(env: Env) -> None:
    env.spans.clear()
    with pytest.raises(errors.FieldNotAllowedError):
        env.inst.query("social", POPULATION.service, CITIZEN.id, PURPOSE, ("full_name", "address"))
    consumer = [s for s in env.spans.get_finished_spans() if s.name == "cdx.consumer.query"]
    assert [(_attr(s, "cdx.decision"), _attr(s, "cdx.reason")) for s in consumer] == [
        ("deny", "field_not_allowed")
    ]
    assert consumer[0].status.description == "field_not_allowed"


def test_the_named_metrics_are_on_the_prometheus_endpoint(env: Env) -> None:
    _income_query(env)
    with pytest.raises(errors.CdxError):  # no agreement population -> tax: denied
        env.inst.query("population", TAX.service, CITIZEN.id, PURPOSE)
    expected = [
        'cdx_exchanges_total{client="VN:GOV:VSS:benefits",decision="allow",reason="ok",'
        'role="provider",server="VN:GOV:GDT:ss1",service="VN:GOV:GDT:income/income/v1"}',
        'decision="deny"',
        'cdx_stage_duration_seconds_bucket{le="0.5",server="VN:GOV:GDT:ss1",stage="provider.backend"}',
        'stage="consumer.query"',
        'stage="provider.checks"',
        'stage="consent.check"',
        'stage="outbox.write"',
        'stage="audit.append"',
        'cdx_outbox_depth{queue="pending",server="VN:GOV:VSS:ss1"}',
        'cdx_outbox_depth{queue="dead_letter",server="VN:GOV:VSS:ss1"} 0.0',
        'cdx_outbox_oldest_age_seconds{server="VN:GOV:GDT:ss1"}',
        'cdx_globalconf_age_seconds{server="VN:GOV:BCA:ss1"}',
        'cdx_globalconf_expires_in_seconds{server="audit"}',
        'cdx_certificate_expires_in_seconds{server="VN:GOV:GDT:ss1",usage="auth"}',
        'cdx_certificate_expires_in_seconds{server="audit",usage="tls"}',
        "cdx_audit_log_size{",
        "cdx_audit_checkpoint_age_seconds{",
        'cdx_witness_alarm{server="VN:GOV:GDT:ss1"} 0.0',
        'cdx_consent_cache_lookups_total{result="miss"',
    ]

    # Records reach the audit log asynchronously (the outbox ships them): poll, bounded.
    def exposition() -> str | None:
        status, body = env.get("/metrics")
        assert status == 200
        text = body.decode()
        return text if all(e in text for e in expected) else None

    text = eventually(exposition, timeout=10, interval=0.1, what="every named metric")
    size = next(line for line in text.splitlines() if line.startswith("cdx_audit_log_size{"))
    assert float(size.rsplit(" ", 1)[1]) > 0


def test_healthz_is_ok_and_turns_unhealthy_when_the_conf_expires(env: Env) -> None:
    status, body = env.get("/healthz")
    report = json.loads(body)
    assert (status, report["status"]) == (200, "ok"), report
    assert report["checks"][f"{TAX.server_id} outbox"] == "ok"

    # An hour on, every ten-minute configuration has expired: fail closed, and say why.
    env.endpoint.clock = lambda: utcnow() + timedelta(hours=1)
    try:
        status, body = env.get("/healthz")
        report = json.loads(body)
        assert (status, report["status"]) == (503, "unhealthy")
        assert report["checks"][f"{TAX.server_id} globalconf"] == "conf_expired"
        assert report["checks"]["audit globalconf"] == "conf_expired"
        assert env.get("/livez")[0] == 200  # alive: restarting would not help
    finally:
        env.endpoint.clock = utcnow
    assert env.get("/healthz")[0] == 200


def test_healthz_fails_while_a_witness_alarm_is_raised(env: Env) -> None:
    inst = env.inst
    agency = inst.agencies["population"]
    old = agency.witness
    assert old is not None
    accepted = eventually(lambda: old.accepted, what="the witness accepted a checkpoint")
    old.stop()
    # The witness once accepted a larger log than the one now served: a rewrite.
    state = inst.layout.agencies["population"].server_dir / "witness.json"
    forged = {
        "format": "cdx-witness/v1",
        "alarm": None,
        "size": accepted.size + 1000,
        "root": base64.b64encode(b"\x01" * 32).decode(),
        "note": accepted.note,
    }
    state.write_text(json.dumps(forged))
    server = inst.servers["population"]
    witness = Witness(
        server.server_id,
        server.keys.witness_key,
        AuditClient(inst.layout.audit, server.keys.tls),
        server.conf_client.current,
        state,
    )
    agency.witness = witness  # this test's own instance
    with pytest.raises(errors.CheckpointInconsistentError):
        witness.poll_once()
    status, body = env.get("/healthz")
    report = json.loads(body)
    assert status == 503
    assert report["checks"][f"{POPULATION.server_id} witness"] == "witness_alarm"
    metrics = env.get("/metrics")[1].decode()
    assert f'cdx_witness_alarm{{server="{POPULATION.server_id}"}} 1.0' in metrics
    witness.clear_alarm()
    assert env.get("/healthz")[0] == 200
