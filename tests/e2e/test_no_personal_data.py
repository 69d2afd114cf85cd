"""No personal data in telemetry: the demo scenario runs with every span, metric and log line
captured, and none may carry a citizen's national id, name, address or any payload value.

The scenario is ``cdx demo``'s (``stack.demo.run_demo``): a whole instance with real servers,
a query under a legal mandate, refusals, a consent requested, approved, used and revoked, the
citizen's history and the inspector's verification. It runs twice: in this process with every
exporter the platform has (spans, metrics including the Prometheus exposition), and as the
command a user types, ``cdx -v --log-json --telemetry console demo``, whose exported spans,
metrics and log lines are read back from its output. Logging is at its most verbose, and the
captured text is searched for each sample value of ``security_server/backends/sample.py`` and
for citizen tokens (JWTs).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdx import telemetry
from security_server.backends.sample import CITIZENS, INCOME, INSURANCE, UNKNOWN_CITIZEN, rows
from stack.demo import run_demo

pytestmark = pytest.mark.xdist_group("demo")


def forbidden_values() -> set[str]:
    """Every distinctive value of the sample registers (short generic ones such as ``male``,
    ``active``, ``2024`` or a contribution count like ``192`` would match unrelated text such
    as span ids and timestamps, and prove nothing)."""
    values = {UNKNOWN_CITIZEN}
    for c in CITIZENS:
        values |= {c.id, c.full_name, c.address, c.birth_date}
    for cid, (income, employer, _year) in INCOME.items():
        values |= {cid, str(income), employer}
    for cid, (since, _months, _status) in INSURANCE.items():
        values |= {cid, since}
    for kind in ("population", "tax", "social"):
        for row in rows(kind):
            for key in ("household_id", "tax_office", "case_ref"):
                if key in row:
                    values.add(str(row[key]))
    return values


def leaks(corpus: str) -> list[str]:
    found = sorted(v for v in forbidden_values() if v in corpus)
    if "eyJ" in corpus:  # a JWS/JWT (citizen token, consent artefact) in clear
        found.append("a token (eyJ...)")
    return found


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(telemetry.JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        # The raw arguments too: a formatter could drop what a handler elsewhere would print.
        self.lines.append(repr(record.args))


@pytest.fixture
def captured_logging() -> Iterator[Capture]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    saved_levels = {n: logging.getLogger(n).level for n in ("cdx", *telemetry.QUIET_LOGGERS)}
    telemetry.configure_logging(verbose=True, json_lines=True)  # as `cdx -v --log-json`
    capture = Capture()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def test_the_leak_check_finds_a_planted_value() -> None:
    assert leaks('{"message": "lookup of 079090000001"}') == ["079090000001"]
    assert leaks("Nguyễn Văn An") == ["Nguyễn Văn An"]
    assert leaks("authorization: Bearer eyJhbGciOiJFZERTQSJ9") == ["a token (eyJ...)"]
    assert leaks('cdx_exchanges_total{reason="ok"} 3.0') == []


def test_demo_scenario_leaves_no_personal_data_in_traces_metrics_or_logs(
    tmp_path: Path, captured_logging: Capture
) -> None:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tel = telemetry.configure(
        component="stack", span_exporters=[spans], metric_readers=[reader], prometheus=True
    )
    story = io.StringIO()
    try:
        assert run_demo(tmp_path / "data", out=story) == 0, story.getvalue()
        tel.force_flush()
        prometheus = (tel.prometheus_text() or b"").decode()
        metrics = reader.get_metrics_data()
    finally:
        telemetry.reset()

    # Spans: names, attributes, events, status, links and resource, as an exporter sends them.
    finished = spans.get_finished_spans()
    span_text = "\n".join(s.to_json() for s in finished)
    names = {s.name for s in finished}
    for stage in ("cdx.consumer.query", "cdx.provider.forward", "cdx.consent.check",
                  "cdx.provider.backend", "cdx.outbox.write", "cdx.audit.append"):  # fmt: skip
        assert stage in names, f"{stage} missing: the scenario was not traced"

    # Metrics: every data point's labels, and the Prometheus exposition.
    assert metrics is not None
    labels = [
        json.dumps(dict(point.attributes or {}), ensure_ascii=False)
        for rm in metrics.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
    ]
    assert len(labels) > 20
    assert "cdx_exchanges_total" in prometheus

    logs = "\n".join(captured_logging.lines)
    assert len(captured_logging.lines) > 10, "nothing was logged: the capture is not working"

    # The scenario did handle the values (its story shows them to the user at the terminal).
    assert "Nguyễn Văn An" in story.getvalue()

    problems = {
        "spans": leaks(span_text),
        "metric labels": leaks("\n".join(labels)),
        "prometheus": leaks(prometheus),
        "logs": leaks(logs),
    }
    assert not any(problems.values()), problems


STAGES = (
    "cdx.consumer.query",
    "cdx.provider.forward",
    "cdx.consent.check",
    "cdx.provider.backend",
    "cdx.outbox.write",
    "cdx.audit.append",
)


def exported(stderr: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Spans, metrics exports and the other lines (logs) a ``--telemetry console`` process
    wrote to stderr: the console exporters write indented JSON documents, logs JSON lines."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    others: list[str] = []
    lines = stderr.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].startswith("{"):
            rest = "".join(lines[i:])
            try:
                document, end = decoder.raw_decode(rest)
            except json.JSONDecodeError:
                document, end = None, 0
            if isinstance(document, dict) and "context" in document and "kind" in document:
                spans.append(document)
            elif isinstance(document, dict) and "resource_metrics" in document:
                metrics.append(document)
            elif document is not None:
                others.append(json.dumps(document, ensure_ascii=False))
            if document is not None:
                i += rest[:end].count("\n") + 1
                continue
        others.append(lines[i])
        i += 1
    return spans, metrics, others


def test_cdx_demo_exports_its_spans_and_metrics_without_personal_data(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cdx.cli", "-v", "--log-json", "--telemetry", "console",
         "demo", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    spans, metrics, others = exported(done.stderr)

    names = {s["name"] for s in spans}
    for stage in STAGES:
        assert stage in names, f"{stage} not exported: the demo started no telemetry"
    # Whatever an exporter sends of a span: names, attributes, events, status, links, resource.
    span_text = json.dumps(spans, ensure_ascii=False)
    points = [
        {"metric": metric["name"], "labels": point.get("attributes", {})}
        for export in metrics
        for rm in export["resource_metrics"]
        for sm in rm["scope_metrics"]
        for metric in sm["metrics"]
        for point in metric["data"]["data_points"]
    ]
    assert {"cdx.exchanges", "cdx.stage.duration"} <= {p["metric"] for p in points}, points
    assert len(others) > 10, "nothing was logged: the capture is not working"
    assert "Nguyễn Văn An" in done.stdout  # the story shows them to the user at the terminal

    problems = {
        "spans": leaks(span_text),
        "metric labels": leaks(json.dumps(points, ensure_ascii=False)),
        "logs": leaks("".join(others)),
    }
    assert not any(problems.values()), problems


def test_the_console_reader_finds_spans_metrics_and_logs() -> None:
    stderr = (
        '{"message": "one", "level": "INFO"}\n'
        + json.dumps({"name": "cdx.x", "context": {}, "kind": "SpanKind.INTERNAL"}, indent=4)
        + "\nplain line\n"
        + json.dumps({"resource_metrics": []}, indent=4)
        + "\n"
    )
    spans, metrics, others = exported(stderr)
    assert [s["name"] for s in spans] == ["cdx.x"] and len(metrics) == 1
    assert [o.strip() for o in others] == ['{"message": "one", "level": "INFO"}', "plain line"]
