"""Accounts for access decisions as they are made: counters and telemetry, per request.

``DecisionCounter`` keeps allow/deny totals for ``stats()``; ``note_decision`` counts one
decision in ``cdx_exchanges_total`` and describes it on the request's span. Server health (is
the server fit to serve?) is ``security_server.health``; what a decision *is* and how it
becomes a signed record is ``security_server.records``.
"""

from __future__ import annotations

import threading
from typing import Any

from cdx import telemetry
from cdx.v1 import common_pb2
from security_server.records import Decision

__all__ = ["DecisionCounter", "note_decision"]

_UNSPECIFIED = common_pb2.LAWFUL_BASIS_UNSPECIFIED


class DecisionCounter:
    """Thread-safe allow/deny counters (for ``stats()`` and metrics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"allow": 0, "deny": 0}

    def add(self, allowed: bool) -> None:
        with self._lock:
            self._counts["allow" if allowed else "deny"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


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
