"""Audit log benchmark: appends, commit latency, proofs at 1M entries, full verification.

The audit service runs in this process (real gRPC with mutual TLS, its sequencer, checkpointer
and database); the load comes from the separate load-generator process calling as a registered
security server with real signed access records and their openings:

- appends/s with one record per ``Append`` RPC (64 concurrent callers) and with
  ``AppendBatch`` (500 records per call, 4 callers); every run starts on a fresh database and
  the tree size afterwards must equal the records sent (a refused record fails the run);
- commit latency: ``Append`` latency p50/p99, sequential and with 64 callers (an append returns
  only once its leaf is committed);
- CPU per record in the server process (its event loop, threads, sequencer) for each append
  path, and for ``AppendBatch`` separately in the worker processes that check the record
  signatures: what the signature checks cost against everything else;
- baselines in the same run, 64 in flight on the same server: the standard gRPC health
  ``Check`` (a call that does nothing: the floor of a gRPC call on this server), and
  ``GetCheckpoint`` (a light read) against it;
- proofs at 1M entries: the log is filled through the storage layer (``Sequencer.append`` with
  prepared entries, batches of 4,096), then ``GetInclusionProof`` / ``GetConsistencyProof``
  latency p50/p99 over the gRPC API, and the store call alone;
- ``cdx audit verify`` (``audit.verify.verify_log`` over the database, as the operator command
  runs it, worker processes for the signatures) on a log of real signed records, reported per
  million records, with the CPU of the main process per entry (reading, hashing, the tree,
  pairing: all but the signature checks);
- storage per million entries: the database (leaves, nodes, openings, index) and the tiles
  (tiles and entry bundles) of a log of real signed records, measured and scaled.

On SQLite always; also on PostgreSQL when a URL is given (``CDX_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit.tilestore import DirectoryTileStore
from bench.common import Latencies, Report, log, process_cpu_seconds, timed
from bench.loadgen import LoadGenerator, Target
from cdx import crypto, db, merkle, records
from cdx.clock import utcnow
from cdx.globalconf import to_ms
from cdx.v1 import audit_pb2, common_pb2

SUBJECT = "001085012345"
BATCH = 500


def _world() -> Any:
    # The audit tests' trust world: CA, two registered servers, audit keys, signed conf.
    from tests.integration.audit_support import AuditWorld

    return AuditWorld()


@contextlib.contextmanager
def _database(kind: str, root: Path, name: str, postgres_url: str) -> Iterator[Any]:
    if kind == "sqlite":
        engine = db.create_engine(db.sqlite_url(root / f"{name}.db"))
        try:
            yield engine
        finally:
            engine.dispose()
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    # AuditStore keeps one read connection per server thread: the pool must hold them all
    # (the default 10 + 10 overflow is fewer than the server's 32 workers).
    engine = db.create_engine(postgres_url, schema=schema, pool_size=64)
    try:
        yield engine
    finally:
        engine.dispose()
        db.drop_schema(postgres_url, schema)


class _Items:
    """Signed access records with openings, made as a security server's outbox holds them."""

    def __init__(self, world: Any, server_id: str) -> None:
        self._signer = world.servers[server_id].signer
        salt = crypto.new_salt()
        self._opening = (salt, crypto.commitment(salt, SUBJECT.encode()))
        self._template = audit_pb2.AccessRecord(
            recorder=server_id,
            role=common_pb2.CONSUMER,
            client="VN:GOV:VSS:benefits",
            service="VN:GOV:BCA:population/person/v1",
            purpose="SOCIAL_BENEFIT_ELIGIBILITY",
            lawful_basis=common_pb2.LEGAL_OBLIGATION,
            legal_reference="Law on Social Insurance 2024, Art. 10",
            decision=common_pb2.ALLOW,
            reason_code="ok",
            released_fields=["full_name", "birth_date"],
            subject_commitment=self._opening[1],
            request_commitment=crypto.commitment(salt, b"request"),
            response_commitment=crypto.commitment(salt, b"response"),
            visibility=common_pb2.NORMAL,
            kind="access",
        )

    def make(self, count: int) -> list[audit_pb2.OutboxItem]:
        out = []
        now_ms = to_ms(utcnow())
        salt, _ = self._opening
        for _ in range(count):
            record = audit_pb2.AccessRecord()
            record.CopyFrom(self._template)
            record.record_id = str(uuid.uuid4())
            record.message_id = str(uuid.uuid4())
            record.time_ms = now_ms
            opening = audit_pb2.RecordOpening(
                record_id=record.record_id, subject=SUBJECT, subject_salt=salt
            )
            out.append(
                audit_pb2.OutboxItem(
                    record=records.sign_access_record(record, self._signer), opening=opening
                )
            )
        return out


#: Worker processes checking the record signatures of batches (the server's 2 cores).
VERIFY_WORKERS = 2


def _start(world: Any, engine: Any, **kw: Any) -> Any:
    return world.start(engine, checkpoint_interval=1.0, verify_workers=VERIFY_WORKERS, **kw)


def _append_runs(
    world: Any,
    kind: str,
    root: Path,
    postgres_url: str,
    load: LoadGenerator,
    *,
    quick: bool,
    runs: int,
    report: Report,
) -> None:
    from tests.integration.audit_support import CONSUMER

    single_s, batch_s, seq_s, warm = (0.6, 1.5, 0.5, 0.2) if quick else (4.0, 4.0, 3.0, 1.0)
    tls = world.servers[CONSUMER].tls
    maker = _Items(world, CONSUMER)
    single_n = 3_000 if quick else int(6_000 * (single_s + warm)) + 5_000
    batch_n = 40_000 if quick else int(50_000 * (batch_s + warm))
    log(f"audit[{kind}]: signing {single_n + batch_n} access records")
    singles = [i.SerializeToString() for i in maker.make(single_n)]
    batched_items = maker.make(batch_n)
    batches = [
        audit_pb2.AppendBatchRequest(items=batched_items[i : i + BATCH]).SerializeToString()
        for i in range(0, len(batched_items), BATCH)
    ]
    seq_items = [i.SerializeToString() for i in maker.make(2_000 if not quick else 500)]
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for n in range(runs):
        log(f"audit[{kind}]: append run {n + 1}/{runs}")
        with _database(kind, root, f"append{n}", postgres_url) as engine:
            running = _start(world, engine)
            try:
                address = running.address

                def target(
                    name: str, method: str, reqs: list[bytes], resp: str, address: str = address
                ) -> Target:
                    return Target(
                        name, address, method, tuple(reqs), resp,
                        tls.cert_pem, tls.key_pem, tls.ca_pem,
                    )  # fmt: skip

                plain = load.run(
                    # The health check's answer parses as an Empty (its field is unknown there).
                    target("health", "/grpc.health.v1.Health/Check", [b""], "common_pb2.Empty"),
                    concurrency=64, duration=single_s, warmup=warm,
                )  # fmt: skip
                floor = load.run(
                    target(
                        "checkpoint", "/cdx.v1.AuditLog/GetCheckpoint",
                        [audit_pb2.GetCheckpointRequest().SerializeToString()],
                        "audit_pb2.Checkpoint",
                    ),
                    concurrency=64, duration=single_s, warmup=warm,
                )  # fmt: skip
                before = running.store.tree_state().size
                server = os.getpid()
                seq = load.run(
                    target("append-seq", "/cdx.v1.AuditLog/Append", seq_items, "audit_pb2.AppendResult"),
                    concurrency=1, duration=seq_s, warmup=warm / 2,
                )  # fmt: skip
                cpu0 = process_cpu_seconds(server)
                one = load.run(
                    target("append", "/cdx.v1.AuditLog/Append", singles, "audit_pb2.AppendResult"),
                    concurrency=64, duration=single_s, warmup=warm,
                )  # fmt: skip
                one_cpu = (process_cpu_seconds(server) - cpu0) / max(1, one.total_calls)
                size = running.store.tree_state().size
                sent = seq.total_calls + one.total_calls
                if size - before != sent or one.failures or seq.failures:
                    raise RuntimeError(
                        f"audit[{kind}]: {sent} records sent, tree grew by {size - before} "
                        f"({one.failures + seq.failures} failed calls: {one.first_error})"
                    )
                workers = _worker_pids(running)
                cpu0, wcpu0 = process_cpu_seconds(server), _cpu(workers)
                many = load.run(
                    target("append-batch", "/cdx.v1.AuditLog/AppendBatch", batches,
                           "audit_pb2.AppendBatchResponse"),
                    concurrency=4, duration=batch_s, warmup=warm,
                )  # fmt: skip
                records_sent = max(1, many.total_calls * BATCH)
                many_cpu = (process_cpu_seconds(server) - cpu0) / records_sent
                many_workers_cpu = (_cpu(workers) - wcpu0) / records_sent
                grown = running.store.tree_state().size - size
                if grown != many.total_calls * BATCH or many.failures:
                    raise RuntimeError(
                        f"audit[{kind}]: batches appended {grown} of "
                        f"{many.total_calls * BATCH} records ({many.first_error})"
                    )
                if many.total_calls >= len(batches) or one.total_calls >= len(singles):
                    raise RuntimeError("audit: the pre-signed records ran out; raise the counts")
            finally:
                running.stop(0)
        lat_seq, lat_one = Latencies.of(seq.latencies_s), Latencies.of(one.latencies_s)
        add("plain", plain.throughput)
        add("floor", floor.throughput)
        add("cp_ratio", floor.throughput / plain.throughput * 100 if plain.throughput else 0.0)
        add("single", one.throughput)
        add("batch", many.throughput * BATCH)
        add("seq_p50", lat_seq.p50_ms)
        add("seq_p99", lat_seq.p99_ms)
        add("one_p50", lat_one.p50_ms)
        add("one_p99", lat_one.p99_ms)
        add("ratio", one.throughput / floor.throughput * 100 if floor.throughput else 0.0)
        add("one_cpu", one_cpu * 1e6)
        add("many_cpu", many_cpu * 1e6)
        add("many_workers_cpu", many_workers_cpu * 1e6)

    report.add("appends/s, one record per RPC, 64 callers", rows["single"], "/s",
               target=">= 3,000/s", check=lambda v: v >= 3000)  # fmt: skip
    report.add(f"appends/s, AppendBatch ({BATCH} per call, 4 callers)", rows["batch"], "/s",
               target=">= 30,000/s", check=lambda v: v >= 30000)  # fmt: skip
    report.add("commit (Append) p50, sequential", rows["seq_p50"], "ms")
    report.add("commit (Append) p99, sequential", rows["seq_p99"], "ms")
    report.add("commit (Append) p50, 64 callers", rows["one_p50"], "ms")
    report.add("commit (Append) p99, 64 callers", rows["one_p99"], "ms")
    report.add("baseline: a plain gRPC call (health Check) on the audit server, 64 in flight",
               rows["plain"], "/s")  # fmt: skip
    report.add("GetCheckpoint RPCs/s, 64 in flight", rows["floor"], "/s")
    report.add("GetCheckpoint / plain call throughput", rows["cp_ratio"], "%",
               target="near 100 %", check=lambda v: v >= 80)  # fmt: skip
    report.add("Append / GetCheckpoint throughput", rows["ratio"], "%")
    report.add("server CPU per record, Append (64 callers; signature checked in the server)",
               rows["one_cpu"], "us")  # fmt: skip
    report.add("server CPU per record, AppendBatch (all but the signature checks)",
               rows["many_cpu"], "us")  # fmt: skip
    report.add("signature workers' CPU per record, AppendBatch", rows["many_workers_cpu"], "us")


def _worker_pids(running: Any) -> list[int]:
    """The processes checking record signatures for ``running`` (none without a pool)."""
    pool = getattr(running._signatures, "_pool", None)
    return list(getattr(pool, "_processes", None) or ())


def _cpu(pids: list[int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids)


def _fill(engine: Any, size: int) -> float:
    """Append ``size`` entries through the storage layer; returns entries per second."""
    from audit.sequencer import PreparedEntry, Sequencer

    db.migrate(engine, "audit")
    sequencer = Sequencer(engine).start()
    now_ms = to_ms(utcnow())
    body = b"cdx-bench-leaf/" * 20
    started = time.perf_counter()
    try:
        done = 0
        while done < size:
            chunk = min(4096, size - done)
            entries = []
            for i in range(done, done + chunk):
                rid = f"bench-{i:08d}"
                leaf = body + rid.encode()
                entries.append(
                    PreparedEntry(
                        record_id=rid, leaf=leaf, leaf_hash=merkle.leaf_hash(leaf),
                        recorder="VN:GOV:VSS:ss1", role=common_pb2.CONSUMER,
                        client="VN:GOV:VSS:benefits", service="VN:GOV:BCA:population/person/v1",
                        purpose="SOCIAL_BENEFIT_ELIGIBILITY", decision=common_pb2.ALLOW,
                        reason="ok", time_ms=now_ms, message_id=rid, visibility=common_pb2.NORMAL,
                        kind="access", epoch="2026-01",
                    )
                )  # fmt: skip
            sequencer.append(entries, timeout=300)
            done += chunk
    finally:
        sequencer.stop()
    return size / (time.perf_counter() - started)


def _proof_runs(
    world: Any, kind: str, root: Path, postgres_url: str, *, quick: bool, report: Report
) -> None:
    from audit.client import AuditClient
    from tests.integration.audit_support import CONSUMER

    size = 20_000 if quick else 1_000_000
    queries = 100 if quick else 1_000
    with _database(kind, root, "proofs", postgres_url) as engine:
        log(f"audit[{kind}]: filling the log with {size:,} entries through the storage layer")
        fill_rate = _fill(engine, size)
        running = _start(world, engine)
        rng = random.Random(7)
        try:
            running.checkpointer.publish_once()
            client = AuditClient(running.address, world.servers[CONSUMER].tls)
            try:
                client.inclusion_proof(index=1, tree_size=size)  # warm the channel
                incl = timed(
                    lambda: client.inclusion_proof(index=rng.randrange(size), tree_size=size),
                    queries,
                )
                cons = timed(
                    lambda: client.consistency_proof(rng.randrange(1, size), size), queries
                )
            finally:
                client.close()
            store_incl = timed(
                lambda: running.store.inclusion_proof(rng.randrange(size), size), queries
            )
        finally:
            running.stop(0)
    label = f"{size:,}"
    li, lc, ls = Latencies.of(incl), Latencies.of(cons), Latencies.of(store_incl)
    report.add(f"log filled through the storage layer ({label})", [fill_rate], "entries/s")
    report.add(f"inclusion proof p50 at {label} (gRPC)", [li.p50_ms], "ms")
    report.add(f"inclusion proof p99 at {label} (gRPC)", [li.p99_ms], "ms",
               target="< 5 ms", check=lambda v: v < 5)  # fmt: skip
    report.add(f"consistency proof p50 at {label} (gRPC)", [lc.p50_ms], "ms")
    report.add(f"consistency proof p99 at {label} (gRPC)", [lc.p99_ms], "ms",
               target="< 5 ms", check=lambda v: v < 5)  # fmt: skip
    report.add(f"inclusion proof p99 at {label} (store only)", [ls.p99_ms], "ms")


def _verify_runs(
    world: Any, kind: str, root: Path, postgres_url: str, *, quick: bool, report: Report
) -> None:
    from audit.store import AuditStore
    from audit.verify import StoreSource, Trust, verify_log
    from tests.integration.audit_support import CONSUMER, PROVIDER

    size = 2_000 if quick else 40_000
    with _database(kind, root, "verify", postgres_url) as engine:
        tiles_dir = root / f"tiles-{kind}"
        running = _start(world, engine, tiles=DirectoryTileStore(tiles_dir))
        try:
            log(f"audit[{kind}]: appending {size:,} signed records for verification")
            makers = {s: _Items(world, s) for s in (CONSUMER, PROVIDER)}
            for _ in range(0, size, 2 * BATCH):
                for server, maker in makers.items():
                    items = maker.make(BATCH)
                    running.service.append(server, items)
            running.checkpointer.publish_once()
            assert running.publisher is not None
            running.publisher.publish_once()
            database_bytes = _database_bytes(engine)
        finally:
            running.stop(0)
        tiles_bytes = sum(p.stat().st_size for p in tiles_dir.rglob("*") if p.is_file())
        trust = Trust.from_conf(world.conf())
        t0, c0 = time.perf_counter(), time.process_time()
        result = verify_log(StoreSource(AuditStore(engine)), trust, workers=2)
        elapsed, main_cpu = time.perf_counter() - t0, time.process_time() - c0
    # One-sided messages are expected (each record has its own message id): warnings only.
    errors_found = [f for f in result.findings if f.severity == "error"]
    if errors_found:
        raise RuntimeError(f"audit[{kind}]: verification found errors: {errors_found[:3]}")
    report.add(
        f"cdx audit verify, per million records (measured on {size:,}, 2 worker processes)",
        [elapsed / size * 1e6],
        "s",
        target="<= 30 s",
        check=lambda v: v <= 30,
    )
    from audit import verify

    inline = size < verify._PROCESS_THRESHOLD  # a small log is checked in one process
    report.add(
        "cdx audit verify: main process CPU per entry "
        + ("(inline: signatures included)" if inline else "(all but the signature checks)"),
        [main_cpu / size * 1e6],
        "us",
    )
    report.add(
        f"storage per million entries: database (measured on {size:,} signed records)",
        [database_bytes / size * 1e6 / 2**30],
        "GiB",
    )
    report.add(
        f"storage per million entries: tiles and bundles (measured on {size:,})",
        [tiles_bytes / size * 1e6 / 2**30],
        "GiB",
    )


def _database_bytes(engine: Any) -> int:
    """Bytes the audit tables take: the SQLite file (WAL checkpointed), or PostgreSQL's total
    relation size (indexes and TOAST included) of every table in the schema."""
    import sqlalchemy as sa

    from audit import store

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int(pages) * int(page_size)
        total = 0
        for table in store.metadata.tables:
            total += int(
                conn.execute(
                    sa.text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
                ).scalar_one()
            )
        return total


def run_all(*, quick: bool = False, runs: int = 3, postgres_url: str = "") -> list[Report]:
    """Run the audit benchmark on SQLite, and on PostgreSQL when ``postgres_url`` is set."""
    kinds = ["sqlite"] + (["postgres"] if postgres_url else [])
    runs = 1 if quick else runs
    reports = []
    world = _world()
    load = LoadGenerator()
    try:
        with tempfile.TemporaryDirectory(prefix="cdx-bench-audit-") as tmp:
            root = Path(tmp)
            for kind in kinds:
                report = Report(f"audit ({kind})", params={"runs": runs, "batch": BATCH})
                _append_runs(world, kind, root, postgres_url, load, quick=quick, runs=runs,
                             report=report)  # fmt: skip
                _proof_runs(world, kind, root, postgres_url, quick=quick, report=report)
                _verify_runs(world, kind, root, postgres_url, quick=quick, report=report)
                reports.append(report)
    finally:
        load.close()
    return reports
