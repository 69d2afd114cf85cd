"""Health checks and gauges of a running security server (for ``/healthz`` and ``/metrics``).

``health_checks(running, witness)`` fails when the global configuration or a certificate has
expired, when the outbox backlog is older than its window (the server then refuses to release
data), or when the server's witness raised an alarm about the audit log. ``observe(running,
witness)`` feeds the outbox, global-conf, certificate and witness gauges of ``cdx.telemetry``
and returns a function that stops feeding them. Labels name the server only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from cdx import health, telemetry
from cdx.v1 import common_pb2

if TYPE_CHECKING:  # pragma: no cover - the server imports the modules that import this one
    from security_server.records import Decision
    from security_server.server import RunningSecurityServer

_UNSPECIFIED = common_pb2.LAWFUL_BASIS_UNSPECIFIED


class WitnessLike(Protocol):
    """What ``audit.witness.Witness`` offers (the audit component may be absent)."""

    @property
    def accepted(self) -> Any: ...

    def health(self) -> str | None: ...


WitnessSource = Callable[[], "WitnessLike | None"]


def note_decision(
    stage: Any,
    server_id: str,
    role: str,
    decision: Decision,
    *,
    allowed: bool,
    reason: str,
) -> None:
    """Count one decision (``cdx_exchanges_total``) and describe it on the stage's span.

    Client, service and purpose are named only once an agreement in global configuration
    vouched for them (the lawful basis is known): before that they are whatever the caller
    wrote, and telemetry must neither carry a caller's free text nor grow without bound.
    """
    if not telemetry.current().active:
        return
    known = decision.lawful_basis != _UNSPECIFIED
    client = decision.client if known else ""
    service = decision.service if known else ""
    metrics = telemetry.metrics()
    if metrics.enabled:
        metrics.exchange(
            server=server_id,
            role=role,
            allowed=allowed,
            reason=reason,
            client=client,
            service=service,
        )
    if stage is None:
        return
    stage.set("decision", "allow" if allowed else "deny")
    stage.set("reason", reason)
    if known:
        stage.set("client", client)
        stage.set("service", service)
        stage.set("purpose", decision.purpose)
    if decision.verified and decision.message_id:
        stage.set("message_id", decision.message_id)


def health_checks(
    running: RunningSecurityServer, witness: WitnessSource | None = None
) -> list[health.Check]:
    """The ``/healthz`` checks of one security server, named after it. ``witness()`` returns
    the server's witness (looked up at each check: an operator may replace it)."""
    name = running.server_id
    keys = running.keys
    checks = [
        health.conf_check(f"{name} globalconf", running.conf_client.current),
        health.certificate_check(
            f"{name} certificates", lambda: (keys.auth_cert, keys.signing_cert)
        ),
        health.error_check(f"{name} outbox", running.outbox.check_release),
    ]
    if witness is not None:

        def alarm() -> str | None:
            current = witness()
            return current.health() if current is not None else None

        checks.append(health.problem_check(f"{name} witness", alarm, "witness_alarm"))
    return checks


def observe(
    running: RunningSecurityServer, witness: WitnessSource | None = None
) -> Callable[[], None]:
    """Feed this server's gauges; returns the function that removes them again."""
    labels = {"server": running.server_id}
    now = running._now
    keys = running.keys
    certificates = (("auth", keys.auth_cert), ("signing", keys.signing_cert), ("ca", keys.ca_cert))

    def outbox_depth() -> list[telemetry.Sample]:
        return [(float(running.outbox.depth()), labels)]

    def outbox_age() -> list[telemetry.Sample]:
        age = running.outbox.oldest_unshipped_age(now())
        return [(age.total_seconds() if age is not None else 0.0, labels)]

    removers = [
        telemetry.observe("cdx.outbox.depth", outbox_depth),
        telemetry.observe("cdx.outbox.oldest_age", outbox_age),
        *health.observe_conf(labels, running.conf_client.latest, now),
        health.observe_certificates(
            labels,
            lambda: certificates,
            now,
        ),
    ]
    if witness is not None:
        removers += observe_witness(running.server_id, witness)

    def remove() -> None:
        for fn in removers:
            fn()

    return remove


def observe_witness(server_id: str, witness: WitnessSource) -> list[Callable[[], None]]:
    """``cdx_witness_alarm`` (0/1) and ``cdx_witness_checkpoint_size`` of one witness."""
    labels = {"server": server_id}

    def alarm() -> list[telemetry.Sample]:
        current = witness()
        return [] if current is None else [(1.0 if current.health() else 0.0, labels)]

    def size() -> list[telemetry.Sample]:
        current = witness()
        accepted = current.accepted if current is not None else None
        return [(float(accepted.size), labels)] if accepted is not None else []

    return [
        telemetry.observe("cdx.witness.alarm", alarm),
        telemetry.observe("cdx.witness.checkpoint_size", size),
    ]
