"""Whether a security server is fit to serve, from the parts it depends on (``/healthz``,
gRPC health, ``/metrics``).

``ServerHealth`` is built from what it checks — the global-configuration source, the
certificates, the outbox, the dependencies (``cdx.dependencies``) and, when there is one, the
witness — never from the running server, so it can be built and tested on its own.

What stops the server serving (critical: ``/healthz`` 503, gRPC health NOT_SERVING):

- the global configuration or a certificate expired (``conf_expired``,
  ``certificate_expired``): every decision rests on them;
- the outbox backlog is older than its window (``audit_backlog``): the audit log has been
  unreachable (or refusing records for now) for too long, so data release stops (fail closed);
- the witness raised an alarm about the audit log (``witness_alarm``).

What only degrades it (``/healthz`` 200 ``degraded``, gRPC health unchanged), because the
server still serves safely and an operator must act:

- a dependency fails: the **audit log** (records queue in the outbox until the window ends,
  then the backlog check above stops release), the **consent service** (consent-based
  requests are denied once cached answers expire; legal mandates continue), the **registry**
  (the server runs on its verified copy until it expires, then ``conf_expired``), a
  **backend** (its services answer ``backend_unavailable``; the exchange endpoint reports those
  services NOT_SERVING under their own names in gRPC health, while every other service and the
  gateway go on);
- dead letters (``dead_letters``): records the audit log refused for good, out of the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509

from cdx import health, telemetry
from cdx.clock import Clock
from cdx.dependencies import Dependencies, Dependency

__all__ = ["DEAD_LETTERS", "OutboxState", "ServerHealth", "WitnessLike", "WitnessSource"]

#: Code of the dead-letter alarm.
DEAD_LETTERS = "dead_letters"


class OutboxState(Protocol):
    """What health needs of ``security_server.outbox.Outbox``."""

    def check_release(self, now: datetime) -> None: ...

    def depth(self) -> int: ...

    def dead_letter_count(self) -> int: ...

    def oldest_unshipped_age(self, now: datetime) -> timedelta | None: ...


class WitnessLike(Protocol):
    """What ``audit.witness.Witness`` offers (the audit component may be absent)."""

    @property
    def accepted(self) -> Any: ...

    def health(self) -> str | None: ...


#: Looked up at each check: the witness starts after the server (and an operator may replace it).
WitnessSource = Callable[[], "WitnessLike | None"]
Certificates = Callable[[], Iterable[tuple[str, x509.Certificate]]]


class ServerHealth:
    """The health checks and gauges of one security server.

    ``conf(now)`` is the current global configuration (raising once expired), ``latest_conf()``
    the copy held even if expired; ``certificates()`` yields ``(usage, certificate)`` pairs
    (``auth`` and ``signing`` must be valid; ``ca`` is only observed); ``backends`` maps each
    configured backend key (service or subsystem id) to its backend's dependency.
    """

    def __init__(
        self,
        server_id: str,
        *,
        conf: Callable[[datetime], object],
        latest_conf: Callable[[], Any],
        certificates: Certificates,
        outbox: OutboxState,
        dependencies: Dependencies,
        backends: Mapping[str, Dependency],
        clock: Clock,
        witness: WitnessSource | None = None,
    ) -> None:
        self.server_id = server_id
        self._conf = conf
        self._latest_conf = latest_conf
        self._certificates = certificates
        self._outbox = outbox
        self.dependencies = dependencies
        self._backends = dict(backends)
        self._clock = clock
        self._witness = witness

    # --- checks -------------------------------------------------------------------------------

    def checks(self) -> list[health.Check]:
        """Every check, named after the server; critical ones first."""
        name = self.server_id

        def validated() -> list[x509.Certificate]:
            return [cert for usage, cert in self._certificates() if usage != "ca"]

        checks = [
            health.conf_check(f"{name} globalconf", self._conf),
            health.certificate_check(f"{name} certificates", validated),
            health.error_check(f"{name} outbox", self._outbox.check_release),
        ]
        if self._witness is not None:
            checks.append(health.problem_check(f"{name} witness", self._witness_alarm))
        checks.append(
            health.problem_check(f"{name} outbox dead letters", self._dead_letters, critical=False)
        )
        checks += self.dependencies.health_checks(f"{name} ")
        return checks

    def problem(self, now: datetime | None = None) -> str | None:
        """The first failing critical check's code (``None`` while fit to serve)."""
        checks = [c for c in self.checks() if c.critical]
        for code in health.evaluate(checks, now or self._clock()).values():
            if code != health.OK:
                return code
        return None

    def services(self) -> dict[str, bool]:
        """Backend key -> whether its backend is not known to be failing (gRPC health names)."""
        return {key: dep.up is not False for key, dep in self._backends.items()}

    def _witness_alarm(self) -> str | None:
        current = self._witness() if self._witness is not None else None
        return "witness_alarm" if current is not None and current.health() else None

    def _dead_letters(self) -> str | None:
        return DEAD_LETTERS if self._outbox.dead_letter_count() else None

    # --- gauges -------------------------------------------------------------------------------

    def observe(self) -> Callable[[], None]:
        """Feed this server's gauges; returns the function that removes them again.

        ``cdx_outbox_depth{queue="pending"}`` counts queued records,
        ``cdx_outbox_depth{queue="dead_letter"}`` the dead letters (alert when above 0); their
        sum is every record the audit log has not accepted.
        """
        labels = {"server": self.server_id}
        outbox, clock = self._outbox, self._clock

        def outbox_depth() -> list[telemetry.Sample]:
            return [
                (float(outbox.depth()), {**labels, "queue": "pending"}),
                (float(outbox.dead_letter_count()), {**labels, "queue": "dead_letter"}),
            ]

        def outbox_age() -> list[telemetry.Sample]:
            age = outbox.oldest_unshipped_age(clock())
            return [(age.total_seconds() if age is not None else 0.0, labels)]

        removers = [
            telemetry.observe("cdx.outbox.depth", outbox_depth),
            telemetry.observe("cdx.outbox.oldest_age", outbox_age),
            *health.observe_conf(labels, self._latest_conf, clock),
            health.observe_certificates(labels, self._certificates, clock),
        ]
        if self._witness is not None:
            removers += observe_witness(self.server_id, self._witness)

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
