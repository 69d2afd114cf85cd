"""Exchange benchmark: the whole hop chain with every check on, against a direct call.

Exchange: information system -> consumer security server (social insurance, ``Gateway.Query``
over mTLS) -> provider security server (tax, ``Exchange`` over mTLS) -> tax backend
(``DataProvider.Fetch``), under a CONSENT agreement, so each exchange runs: client-certificate
authentication, the agreement check on both sides, HPKE sealing and opening, ECDSA signatures
both ways, the replay check, the consent check (the provider's ``CachedConsentChecker``, fed
by the consent service's change feed), field minimisation and a durable access record in each
server's outbox before data is released.

Baseline, in the same run: the same load generator calling the same backend's
``DataProvider.Fetch`` directly. Each party is its own process: load generator, consumer,
provider, backend; the registry and consent service run in the coordinating process, idle
while measuring apart from change-feed heartbeats and configuration polls.

Measured: sequential (one call in flight) latency p50/p99 and the latency the exchange adds;
64 in flight: throughput and its ratio to the direct throughput; CPU per exchange per process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import CpuMeter, Latencies, Report, log, median
from bench.instance import CONSENT_PURPOSE, build_instance
from bench.loadgen import LoadGenerator, LoadResult, Target
from cdx.v1 import exchange_pb2

#: Sample citizens with a tax record (``security_server.backends.sample.INCOME``).
SUBJECTS = ("079090000001", "079090000002", "079090000003", "079090000005")
FIELDS = ("annual_income", "tax_year")


def _targets(instance: Any) -> tuple[Target, Target]:
    social, tax = instance.agency("social"), instance.agency("tax")
    service = tax.spec.service
    queries = tuple(
        exchange_pb2.QueryRequest(
            client=social.spec.subsystem,
            service=service,
            subject=s,
            purpose=CONSENT_PURPOSE,
            fields=list(FIELDS),
        ).SerializeToString()
        for s in SUBJECTS
    )
    fetches = tuple(
        exchange_pb2.FetchRequest(
            service=service,
            subject=s,
            fields=list(FIELDS),
            purpose=CONSENT_PURPOSE,
            client=social.spec.subsystem,
        ).SerializeToString()
        for s in SUBJECTS
    )
    ident = social.client_identity
    exchange = Target(
        "exchange",
        social.gateway_address,
        "/cdx.v1.Gateway/Query",
        queries,
        "exchange_pb2.QueryResponse",
        ident.cert_pem,
        ident.key_pem,
        ident.ca_pem,
    )
    direct = Target(
        "direct", tax.backend_address, "/cdx.v1.DataProvider/Fetch", fetches,
        "exchange_pb2.FetchResponse",
    )  # fmt: skip
    return direct, exchange


def _check(result: LoadResult) -> LoadResult:
    if result.failures:
        raise RuntimeError(
            f"{result.target}: {result.failures} failed calls (first: {result.first_error})"
        )
    if not result.calls:
        raise RuntimeError(f"{result.target}: no call completed in the measured window")
    return result


def run(
    *,
    quick: bool = False,
    server_workers: int = 32,
    stream: bool = True,
    runs: int = 3,
    concurrency: int = 64,
    workdir: Path | None = None,
    profile_dir: Path | None = None,
) -> Report:
    """Run the exchange benchmark; returns its report (medians over ``runs``)."""
    seq_s, conc_s, warm_s = (0.5, 0.5, 0.3) if quick else (4.0, 6.0, 1.0)
    runs = 1 if quick else runs
    report = Report(
        "exchange",
        params={
            "runs": runs,
            "concurrency": concurrency,
            "sequential_s": seq_s,
            "concurrent_s": conc_s,
            "warmup_s": warm_s,
            "database": "sqlite",
            "lawful_basis": "CONSENT (cached consent check)",
            "exchange_stream": stream,
            "server_workers": server_workers,
        },
    )
    with tempfile.TemporaryDirectory(prefix="cdx-bench-exchange-", dir=workdir) as tmp:
        root = Path(tmp)
        log("exchange: building the instance (registry, consent service, keys)")
        instance = build_instance(root, server_workers=server_workers, exchange_stream=stream)
        load: LoadGenerator | None = None
        try:
            for subject in SUBJECTS:
                instance.grant(subject)
            procs = {
                "backend": instance.start_backend("tax"),
                "provider": instance.start_server("tax"),
                "consumer": instance.start_server("social"),
            }
            for proc in procs.values():
                proc.wait_ready()
            load = LoadGenerator()
            direct, exchange = _targets(instance)
            # Warm up the channels (TLS handshakes, consent cache) and prove both paths work.
            _check(load.run(exchange, concurrency=4, duration=0.3, warmup=0.5))
            _check(load.run(direct, concurrency=4, duration=0.3, warmup=0.2))
            pids = {name: p.pid for name, p in procs.items()} | {"client": load.pid}
            results: dict[str, list[Any]] = {
                k: [] for k in ("seq_direct", "seq_exchange", "conc_direct", "conc_exchange")
            }
            cpu: dict[str, list[dict[str, float]]] = {"direct": [], "exchange": []}
            counters: dict[str, list[Any]] = {"direct": [], "exchange": []}
            if profile_dir is not None:
                _profile(instance, procs, load, exchange, concurrency, profile_dir)
            for n in range(runs):
                log(f"exchange: run {n + 1}/{runs}")
                results["seq_direct"].append(
                    _check(load.run(direct, concurrency=1, duration=seq_s, warmup=warm_s / 2))
                )
                results["seq_exchange"].append(
                    _check(load.run(exchange, concurrency=1, duration=seq_s, warmup=warm_s / 2))
                )
                for key, target in (("direct", direct), ("exchange", exchange)):
                    meter = CpuMeter(pids)
                    meter.start()
                    res = _check(
                        load.run(target, concurrency=concurrency, duration=conc_s, warmup=warm_s)
                    )
                    used = meter.stop()
                    results[f"conc_{key}"].append(res)
                    cpu[key].append({k: v / res.total_calls * 1e6 for k, v in used.items()})
                    counters[key].append(
                        {
                            party: {
                                k: v / res.total_calls * 1e6
                                if k.endswith("_s")
                                else v / res.total_calls
                                for k, v in c.items()
                            }
                            for party, c in meter.counters.items()
                        }
                    )
        finally:
            if load is not None:
                load.close()
            instance.close()

    seq_d = [Latencies.of(r.latencies_s) for r in results["seq_direct"]]
    seq_e = [Latencies.of(r.latencies_s) for r in results["seq_exchange"]]
    report.add("direct call p50, sequential", [x.p50_ms for x in seq_d], "ms")
    report.add("direct call p99, sequential", [x.p99_ms for x in seq_d], "ms")
    report.add("exchange p50, sequential", [x.p50_ms for x in seq_e], "ms")
    report.add("exchange p99, sequential", [x.p99_ms for x in seq_e], "ms")
    report.add(
        "added latency p50, sequential",
        [e.p50_ms - d.p50_ms for e, d in zip(seq_e, seq_d)],
        "ms",
        target="<= 2 ms",
        check=lambda v: v <= 2.0,
    )
    report.add(
        "added latency p99, sequential",
        [e.p99_ms - d.p99_ms for e, d in zip(seq_e, seq_d)],
        "ms",
    )
    conc_d, conc_e = results["conc_direct"], results["conc_exchange"]
    report.add(f"direct throughput, {concurrency} in flight", [r.throughput for r in conc_d], "/s")
    report.add(
        f"exchange throughput, {concurrency} in flight",
        [r.throughput for r in conc_e],
        "/s",
        target=">= 1,000/s",
        check=lambda v: v >= 1000,
    )
    report.add(
        "exchange / direct throughput",
        [e.throughput / d.throughput * 100 for e, d in zip(conc_e, conc_d)],
        "%",
        target=">= 25 % (X-Road ~11 %)",
        check=lambda v: v >= 25,
    )
    lat_e = [Latencies.of(r.latencies_s) for r in conc_e]
    report.add(f"exchange p50, {concurrency} in flight", [x.p50_ms for x in lat_e], "ms")
    report.add(f"exchange p99, {concurrency} in flight", [x.p99_ms for x in lat_e], "ms")
    for party in ("client", "consumer", "provider", "backend"):
        report.add(
            f"CPU per exchange: {party}",
            [c[party] for c in cpu["exchange"]],
            "µs",
        )
    report.add(
        "CPU per exchange: all parties",
        [sum(c.values()) for c in cpu["exchange"]],
        "µs",
    )
    report.add(
        "CPU per direct call: client + backend",
        [c["client"] + c["backend"] for c in cpu["direct"]],
        "µs",
    )
    report.details["per_call_counters"] = counters
    report.details["cpu_us_per_call"] = {
        k: {p: median(c[p] for c in v) for p in v[0]} for k, v in cpu.items() if v
    }
    return report


def _profile(
    instance: Any,
    procs: dict[str, Any],
    load: LoadGenerator,
    exchange: Target,
    concurrency: int,
    out: Path,
) -> None:
    """Record py-spy flame graphs of the consumer and provider under load (``--profile``)."""
    import os
    import shutil
    import subprocess
    import sys

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for name in ("consumer", "provider", "backend"):
        spies.append(
            subprocess.Popen(
                [
                    spy, "record", "--pid", str(procs[name].pid), "--duration", "8",
                    "--rate", "200", "--nonblocking", "--format", "raw",
                    "--output", str(out / f"{name}.folded.txt"),
                    *os.environ.get("CDX_BENCH_SPY_ARGS", "").split(),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    load.run(
        exchange,
        concurrency=int(os.environ.get("CDX_BENCH_SPY_CONCURRENCY", concurrency)),
        duration=9.0,
        warmup=0.0,
    )
    for s in spies:
        s.wait(30)
    log(f"exchange: profiles written to {out}")
