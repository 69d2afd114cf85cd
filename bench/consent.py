"""Consent benchmark: the provider's consent check, and how fast a revocation is enforced.

The registry and the consent service run in this process (real gRPC, mutual TLS, its
database); every ``CachedConsentChecker`` runs in its own process with a registered provider
server's auth certificate, exactly as inside ``cdx security-server serve``:

- check latency, cache hit (the steady state) and cache miss (the decision cache emptied
  before each check: one ``CheckConsent`` call, which reads the database); baseline in the same
  run: ``ConsentService.check`` called in the service's own process (the database read alone);
- revocation to enforcement across 3 providers (tax, population, social): a citizen's consent
  covers a service of each; each provider's checker has the allow cached and checks every
  0.5 ms; the time from the moment the revocation is committed until the last of the three
  refuses, p50/p99 over many revocations (the change feed pushes the revocation; no polling
  of the service);
- the cost of sealing at rest (``consent.sealing``): opening and parsing one stored consent's
  terms, as every read of a consent does (a check: once per consent of the subject with the
  caller), against parsing the same terms from clear JSON; and sealing terms and artefact when
  a consent is written. Batch means: one call is too short to time alone.

On SQLite always; also on PostgreSQL when a URL is given (``CDX_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import Latencies, Report, log, percentile
from bench.instance import CONSENT_PURPOSE, build_instance

PROVIDERS = {"tax": "annual_income", "population": "full_name", "social": "status"}
SUBJECT = "079090000001"


def _checker_process(conn: Connection, address: str, tls: Any, client: str, service: str,
                     field: str) -> None:  # fmt: skip
    """Runs in a child: a checker as a provider server holds it; answers commands."""
    from cdx import errors
    from cdx.clock import utcnow
    from consent.checker import CachedConsentChecker

    checker = CachedConsentChecker(address, tls)
    checker.wait_connected(10)

    def check(subject: str, consent_id: str) -> None:
        checker.check(
            subject=subject, client=client, service=service, purpose=CONSENT_PURPOSE,
            fields=[field], consent_id=consent_id or None, now=utcnow(),
        )  # fmt: skip

    try:
        while True:
            command = conn.recv()
            if command is None:
                break
            op = command[0]
            if op == "latency":
                _, subject, consent_id, count = command
                check(subject, consent_id)
                hits, misses = [], []
                clock = time.perf_counter
                for _ in range(count):
                    t0 = clock()
                    check(subject, consent_id)
                    hits.append(clock() - t0)
                for _ in range(max(1, count // 20)):
                    checker.clear()
                    t0 = clock()
                    check(subject, consent_id)
                    misses.append(clock() - t0)
                conn.send((hits, misses))
            elif op == "watch":
                _, subject, consent_id = command
                check(subject, consent_id)  # allowed, and now cached
                conn.send("ready")
                deadline = time.monotonic() + 10
                enforced = 0.0
                while time.monotonic() < deadline:
                    try:
                        check(subject, consent_id)
                    except errors.ConsentDeniedError:
                        enforced = time.monotonic()
                        break
                    except errors.ConsentUnavailableError:
                        pass
                    time.sleep(0.0005)
                conn.send(enforced)
    finally:
        checker.close()


def _sealing_costs(terms_json: str, artefact: str, count: int) -> tuple[float, float, float]:
    """Mean µs per (open and parse terms, parse clear terms, seal terms and artefact)."""
    import json
    import os
    from types import SimpleNamespace

    from consent.model import terms_from_json, terms_of_row
    from consent.sealing import ARTEFACT, TERMS, DataKeys

    keys = DataKeys(os.urandom(32))
    consent_id = str(uuid.uuid4())
    row = SimpleNamespace(id=consent_id, terms=keys.seal(consent_id, TERMS, terms_json))

    def mean_us(fn: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            fn()
        return (time.perf_counter() - t0) / count * 1e6

    opened = mean_us(lambda: terms_of_row(row, keys))
    clear = mean_us(lambda: terms_from_json(json.loads(terms_json)))
    sealed = mean_us(
        lambda: (
            keys.seal(consent_id, TERMS, terms_json),
            keys.seal(consent_id, ARTEFACT, artefact),
        )
    )
    return opened, clear, sealed


def _run_one(kind: str, postgres_url: str, *, quick: bool, runs: int) -> Report:
    from cdx import db
    from cdx.ids import CitizenId
    from consent.model import canonical_json, terms_to_json

    revocations = 5 if quick else 60
    hit_count = 2_000 if quick else 20_000
    report = Report(f"consent ({kind})", params={"revocations": revocations, "runs": runs})
    schema = f"bench_consent_{uuid.uuid4().hex[:8]}" if kind == "postgres" else None
    with tempfile.TemporaryDirectory(prefix="cdx-bench-consent-") as tmp:
        instance = build_instance(
            Path(tmp),
            consent_db_url=postgres_url if kind == "postgres" else None,
            consent_db_schema=schema,
        )
        ctx = multiprocessing.get_context("spawn")
        children: list[tuple[Any, Connection]] = []
        try:
            client = instance.agency("health").spec.subsystem
            for key, field in PROVIDERS.items():
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_checker_process,
                    args=(child, instance.consent.address, instance.server_identity(key), client,
                          instance.agency(key).spec.service, field),
                    daemon=True,
                )  # fmt: skip
                proc.start()
                children.append((proc, parent))
            services = tuple(PROVIDERS)
            fields = tuple(PROVIDERS.values())

            # Check latency (first provider's checker) and the in-process baseline.
            hits_ms, misses_ms, base_ms = [], [], []
            opened_us, clear_us, sealed_us = [], [], []
            consent_id = instance.grant(SUBJECT, grantee="health", services=services, fields=fields)
            subject = CitizenId.parse(SUBJECT, "VN")
            tax_service = instance.agency("tax").spec.service
            for n in range(runs):
                log(f"consent[{kind}]: check latency run {n + 1}/{runs}")
                children[0][1].send(("latency", SUBJECT, consent_id, hit_count))
                hits, misses = children[0][1].recv()
                hits_ms.append(Latencies.of(hits))
                misses_ms.append(Latencies.of(misses))
                samples = []
                for _ in range(max(1, hit_count // 20)):
                    t0 = time.perf_counter()
                    instance.consent.service.check(
                        subject=subject, client=client, service=tax_service,
                        purpose=CONSENT_PURPOSE, fields=["annual_income"], consent_id=consent_id,
                        partial_fields=True,
                    )  # fmt: skip
                    samples.append(time.perf_counter() - t0)
                base_ms.append(Latencies.of(samples))
                record = instance.consent.service.get_mine(subject, consent_id)
                opened, clear, sealed = _sealing_costs(
                    canonical_json(terms_to_json(record.terms)), record.artefact, hit_count
                )
                opened_us.append(opened)
                clear_us.append(clear)
                sealed_us.append(sealed)

            # Revocation to enforcement at every provider.
            log(f"consent[{kind}]: {revocations} revocations across {len(children)} providers")
            worst: list[float] = []
            each: list[float] = []
            for _ in range(revocations):
                cid = instance.grant(SUBJECT, grantee="health", services=services, fields=fields)
                for _, conn in children:
                    conn.send(("watch", SUBJECT, cid))
                for _, conn in children:
                    if conn.recv() != "ready":
                        raise RuntimeError("a checker did not get ready")
                time.sleep(0.02)
                instance.revoke(SUBJECT, cid)
                committed = time.monotonic()
                times = [conn.recv() for _, conn in children]
                if not all(times):
                    raise RuntimeError("a provider still allowed access 10 s after revocation")
                delays = [(t - committed) * 1000 for t in times]
                worst.append(max(delays))
                each.extend(delays)
        finally:
            for proc, conn in children:
                try:
                    conn.send(None)
                except OSError:
                    pass
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()
            instance.close()
            if schema is not None:
                db.drop_schema(postgres_url, schema)
    us = 1000.0
    report.add("check, cache hit p50", [x.p50_ms * us for x in hits_ms], "µs",
               target="< 50 µs", check=lambda v: v < 50)  # fmt: skip
    report.add("check, cache hit p99", [x.p99_ms * us for x in hits_ms], "µs")
    report.add("check, cache miss p50 (CheckConsent RPC)", [x.p50_ms for x in misses_ms], "ms")
    report.add("check, cache miss p99 (CheckConsent RPC)", [x.p99_ms for x in misses_ms], "ms")
    report.add("baseline: ConsentService.check in-process p50", [x.p50_ms for x in base_ms], "ms")
    report.add("at rest: open + parse stored terms, per consent read", opened_us, "µs")
    report.add("baseline: parse the same terms in clear", clear_us, "µs")
    report.add("at rest: seal terms + artefact, per consent written", sealed_us, "µs")
    report.add("revocation enforced at all 3 providers, p50", [percentile(worst, 50)], "ms")
    report.add("revocation enforced at all 3 providers, p99", [percentile(worst, 99)], "ms",
               target="< 200 ms", check=lambda v: v < 200)  # fmt: skip
    report.add("revocation enforced at one provider, p50", [percentile(each, 50)], "ms")
    return report


def run_all(*, quick: bool = False, runs: int = 3, postgres_url: str = "") -> list[Report]:
    """Run the consent benchmark on SQLite, and on PostgreSQL when ``postgres_url`` is set."""
    runs = 1 if quick else runs
    kinds = ["sqlite"] + (["postgres"] if postgres_url else [])
    return [_run_one(kind, postgres_url, quick=quick, runs=runs) for kind in kinds]
