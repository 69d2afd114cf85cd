"""Each benchmark runs for about a second (``--quick``) so that ``make bench`` keeps working.

These do not check the performance targets (they depend on the machine); they check that every
benchmark starts its real servers, completes its measurements without a failed call, and
reports the figures docs/performance.md relies on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, postgres_url


def _values(report: object) -> dict[str, float]:
    return {row.metric: row.value for row in report.rows}  # type: ignore[attr-defined]


def test_exchange_benchmark_measures_both_paths() -> None:
    from bench import exchange

    report = exchange.run(quick=True)
    values = _values(report)
    assert values["exchange throughput, 64 in flight"] > 0
    assert values["direct throughput, 64 in flight"] > 0
    # Each exchange does strictly more work than a direct call, on the same client.
    assert values["exchange p50, sequential"] > values["direct call p50, sequential"]
    assert 0 < values["exchange / direct throughput"] < 100
    assert values["CPU per exchange: provider"] > 0


def test_global_configuration_benchmark_verifies_and_loads() -> None:
    from bench import globalconf

    report = globalconf.run(quick=True)
    values = _values(report)
    assert values["configuration size"] > 0.5  # MB for 1,000 members / 5,000 services
    assert values["verify + load at a server"] > values["baseline: protobuf parse only"] > 0


def test_audit_benchmark_appends_proves_and_verifies() -> None:
    from bench import audit

    (report, *others) = audit.run_all(quick=True, postgres_url=postgres_url() or "")
    for r in (report, *others):
        values = _values(r)
        assert values["appends/s, one record per RPC, 64 callers"] > 0
        assert values["appends/s, AppendBatch (500 per call, 4 callers)"] > 0
        assert values["inclusion proof p50 at 20,000 (gRPC)"] > 0
        verify = "cdx audit verify, per million records (measured on 2,000, 2 worker processes)"
        assert values[verify] > 0
        assert values["GetCheckpoint / plain call throughput"] > 0
        # Where the append CPU goes: the server process, and the signature workers of batches.
        assert (
            values["server CPU per record, Append (64 callers; signature checked in the server)"]
            > 0
        )
        assert values["server CPU per record, AppendBatch (all but the signature checks)"] > 0
        assert values["signature workers' CPU per record, AppendBatch"] > 0
        assert values["storage per million entries: tiles and bundles (measured on 2,000)"] > 0


def test_consent_benchmark_sees_every_revocation_enforced() -> None:
    from bench import consent

    for report in consent.run_all(quick=True, postgres_url=postgres_url() or ""):
        values = _values(report)
        assert (
            0
            < values["check, cache hit p50"]
            < values["check, cache miss p50 (CheckConsent RPC)"] * 1000
        )
        assert values["revocation enforced at all 3 providers, p99"] > 0


@pytest.mark.timeout(300)
def test_make_bench_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "globalconf",
         "--results-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "verify + load at a server" in done.stdout
    (written,) = tmp_path.glob("quick-*.json")
    document = json.loads(written.read_text(encoding="utf-8"))
    assert document["machine"]["cores"] >= 1
    assert document["reports"][0]["name"] == "globalconf"


def test_notify_benchmark_runs_quickly() -> None:
    from bench import notify

    (report,) = notify.run_all(quick=True)
    values = {row.metric: row.value for row in report.rows}
    assert values["access in the log -> e-mail sent, p50"] > 0
    p99 = values["access in the log -> e-mail sent, p99"]
    assert (
        values["access in the log -> e-mail sent, p50"]
        <= p99
        <= values["access in the log -> e-mail sent, max"]
    )
