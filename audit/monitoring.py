"""Health checks and gauges of a running audit log (for ``/healthz`` and ``/metrics``).

``health_checks(running, conf, identity)`` fails when the global configuration or the TLS
certificate has expired, or when the checkpointer refused the committed tree (it no longer
extends the last signed checkpoint: an alarm an operator must investigate). ``observe(running)``
feeds ``cdx_audit_log_size`` and ``cdx_audit_checkpoint_age_seconds`` (each a small read at
collection time) and returns the function that stops feeding them.

``cdx_audit_checkpoint_age_seconds`` measures what an operator must act on: how long the
oldest committed entry has waited for a signed checkpoint (``unsigned_age_s``), 0 while the
latest checkpoint covers every committed entry. An idle log signs nothing new (the tree did not
change), so the age of the latest checkpoint alone would alarm on every quiet instance.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from audit.server import RunningAudit
from audit.store import AuditStore
from cdx import health, rpc, telemetry
from cdx.clock import Clock, utcnow
from cdx.globalconf import to_ms


def health_checks(
    running: RunningAudit,
    conf: Callable[[datetime], object],
    identity: rpc.TlsIdentity | None = None,
) -> list[health.Check]:
    """The ``/healthz`` checks of the audit log (``conf(now)`` as ``ConfClient.current``)."""
    checks = [
        health.conf_check("audit globalconf", conf),
        health.problem_check(
            "audit checkpoints", running.checkpointer.health, "checkpoint_inconsistent"
        ),
    ]
    if running.publisher is not None:
        checks.append(
            health.problem_check("audit tiles", running.publisher.health, "checkpoint_inconsistent")
        )
    if identity is not None:
        cert = identity.certificate()
        checks.append(health.certificate_check("audit certificates", lambda: (cert,)))
    return checks


def unsigned_age_s(store: AuditStore, now_ms: int) -> float:
    """Seconds the oldest committed entry not covered by a signed checkpoint has waited; 0 when
    the latest checkpoint covers the committed tree (also when the log is idle)."""
    committed = store.tree_state().size
    latest = store.latest_checkpoint()
    signed = latest.size if latest is not None else 0
    if committed <= signed:
        return 0.0
    (oldest,) = store.entries(signed, signed + 1)
    return max(0.0, (now_ms - oldest.integrated_at_ms) / 1000.0)


def observe(
    running: RunningAudit,
    *,
    identity: rpc.TlsIdentity | None = None,
    clock: Clock = utcnow,
) -> Callable[[], None]:
    """Feed the audit log's gauges; returns the function that removes them again."""
    labels = {"log": "audit"}

    def log_size() -> list[telemetry.Sample]:
        return [(float(running.store.tree_state().size), labels)]

    def checkpoint_age() -> list[telemetry.Sample]:
        return [(unsigned_age_s(running.store, to_ms(clock())), labels)]

    removers = [
        telemetry.observe("cdx.audit.log_size", log_size),
        telemetry.observe("cdx.audit.checkpoint_age", checkpoint_age),
    ]
    if identity is not None:
        cert = identity.certificate()
        removers.append(
            health.observe_certificates({"server": "audit"}, lambda: (("tls", cert),), clock)
        )

    def remove() -> None:
        for fn in removers:
            fn()

    return remove
