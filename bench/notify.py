"""Notification benchmark: how long after an access is in the audit log its citizen's e-mail
is sent (DESIGN target: p99 <= 5 s), on SQLite and on PostgreSQL.

The sample instance runs in this process with every piece the path needs: the security
servers (their outboxes ship to the log), the audit log (its entry feed), the notification
service and a real SMTP server on loopback (``stack.mailsink``). Each of the six sample
citizens has chosen e-mail for every access. Accesses are made at a steady rate from a
thread pool; for each e-mail the latency is its arrival at the SMTP server minus the moment
the log integrated the entry it links to (``integrated_at_ms``: the access is in the log).
Baseline in the same run: one message sent straight to the same SMTP server with ``smtplib``
(the transport alone).
"""

from __future__ import annotations

import smtplib
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

from bench.common import Report, log, percentile
from cdx.v1 import notify_pb2
from security_server.backends.sample import CITIZENS
from stack.mailsink import ReceivedMail
from stack.provision import create_instance
from stack.runtime import StackOptions, start_instance

SERVICE = "VN:GOV:BCA:population/person/v1"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"
TARGET_S = 5.0


class _Arrivals:
    """When each e-mail arrived, by the record id its link names."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, mail: ReceivedMail) -> None:
        for word in mail.text.split():
            if "/me/access/" in word:
                with self._lock:
                    self.seen[word.rsplit("/", 1)[1]] = mail.received_at


def _smtp_baseline(host: str, port: int, count: int) -> list[float]:
    out = []
    for n in range(count):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@bench.example", "b@bench.example", f"{n}"
        msg.set_content("baseline")
        t0 = time.perf_counter()
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(msg)
        out.append(time.perf_counter() - t0)
    return out


def _run_one(kind: str, postgres_url: str, *, quick: bool, runs: int) -> Report:
    accesses = 30 if quick else 300
    rate = 20.0  # accesses per second
    report = Report(
        f"notify ({kind})", params={"accesses": accesses, "rate_per_s": rate, "runs": runs}
    )
    latencies_ms: list[list[float]] = []
    baseline_ms: list[float] = []
    for n in range(runs):
        schema = f"bench_notify_{uuid.uuid4().hex[:8]}" if kind == "postgres" else None
        with tempfile.TemporaryDirectory(prefix="cdx-bench-notify-") as tmp:
            root = Path(tmp) / "data"
            create_instance(root, witness_quorum=0)
            options = replace(
                StackOptions(),
                witnesses=False,
                portal=False,
                checkpoint_interval=1.0,
                notify_database=(postgres_url, schema) if schema else None,
            )
            inst = start_instance(root, options)
            try:
                sink = inst.mail_sink
                audit = inst.audit
                assert sink is not None and audit is not None
                arrivals = _Arrivals()
                sink.on_mail = arrivals.add  # the sink started with the instance
                for i, citizen in enumerate(CITIZENS):
                    inst.citizen_notify().SetPreferences(
                        notify_pb2.SetPreferencesRequest(
                            preferences=notify_pb2.NotifyPreferences(
                                categories=[notify_pb2.EVERY_ACCESS],
                                email=f"citizen{i}@bench.example",
                                language="vi" if i % 2 else "en",
                            )
                        ),
                        metadata=(("authorization", f"Bearer {inst.token(citizen.id)}"),),
                        timeout=10,
                    )
                log(f"notify[{kind}]: run {n + 1}/{runs}, {accesses} accesses at {rate:g}/s")
                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=8) as pool:
                    futures = []
                    for k in range(accesses):
                        due = started + k / rate
                        time.sleep(max(0.0, due - time.perf_counter()))
                        citizen = CITIZENS[k % len(CITIZENS)].id
                        futures.append(pool.submit(inst.query, "social", SERVICE, citizen, PURPOSE))
                    for f in futures:
                        f.result()
                deadline = time.monotonic() + 60
                while len(arrivals.seen) < accesses and time.monotonic() < deadline:
                    time.sleep(0.1)
                samples = []
                for record_id, arrived in list(arrivals.seen.items()):
                    entry = audit.store.find_record(record_id)
                    if entry is not None:
                        samples.append(arrived * 1000 - entry.integrated_at_ms)
                missing = accesses - len(samples)
                if missing:
                    log(f"notify[{kind}]: {missing} e-mails did not arrive within 60 s")
                    samples += [60_000.0] * missing  # count them, as very late
                latencies_ms.append(samples)
                baseline_ms += [s * 1000 for s in _smtp_baseline(sink.host, sink.port, 20)]
            finally:
                inst.stop()
                if schema:
                    from cdx import db

                    db.drop_schema(postgres_url, schema)
    report.add("access in the log -> e-mail sent, p50", [percentile(s, 50) for s in latencies_ms],
               "ms")  # fmt: skip
    report.add(
        "access in the log -> e-mail sent, p99",
        [percentile(s, 99) for s in latencies_ms],
        "ms",
        target=f"<= {TARGET_S:g} s",
        check=lambda v: v <= TARGET_S * 1000,
    )
    report.add("access in the log -> e-mail sent, max", [max(s) for s in latencies_ms], "ms")
    report.add("baseline: one message straight to the SMTP server, p50",
               [percentile(baseline_ms, 50)], "ms")  # fmt: skip
    return report


def run_all(*, quick: bool = False, runs: int = 3, postgres_url: str = "") -> list[Report]:
    """Run on SQLite, and on PostgreSQL when ``postgres_url`` is set."""
    runs = 1 if quick else runs
    kinds = ["sqlite"] + (["postgres"] if postgres_url else [])
    return [_run_one(kind, postgres_url, quick=quick, runs=runs) for kind in kinds]
