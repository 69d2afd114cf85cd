"""The metric instruments: exchange decisions, stage latency, consent-cache lookups, and gauges
read at collection time from sources components register (``observe``).

``Metrics`` is the no-op facade used while telemetry is off; ``RecordingMetrics`` records into
an OpenTelemetry meter provider. Labels name agencies, servers, services, decisions and reason
codes only, never personal data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from cdx import errors

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider

log = logging.getLogger("cdx.telemetry")

__all__ = [
    "GAUGES",
    "STAGE_BUCKETS",
    "Metrics",
    "RecordingMetrics",
    "Sample",
    "Source",
    "observe",
]

#: Upper bounds (seconds) of the stage-latency histogram: 0.5 ms to 10 s.
STAGE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Gauges read at collection time from sources registered with ``observe``:
#: OpenTelemetry name -> (unit, description). Prometheus shows ``cdx_outbox_depth``,
#: ``cdx_outbox_oldest_age_seconds`` and so on (dots become underscores, ``s`` -> ``_seconds``).
GAUGES: dict[str, tuple[str, str]] = {
    "cdx.outbox.depth": ("{record}", "access records the audit log has not accepted yet"),
    "cdx.outbox.oldest_age": ("s", "age of the oldest access record not yet shipped"),
    "cdx.globalconf.age": ("s", "age of the current global configuration"),
    "cdx.globalconf.expires_in": ("s", "time until the global configuration expires"),
    "cdx.globalconf.version": ("", "version of the current global configuration"),
    "cdx.certificate.expires_in": ("s", "time until a certificate expires"),
    "cdx.audit.log_size": ("{entry}", "entries in the audit log's committed tree"),
    "cdx.audit.checkpoint_age": (
        "s",
        "how long the audit log's oldest committed entry not covered by a signed checkpoint "
        "has waited (0 while the latest checkpoint covers every entry, also when idle)",
    ),
    "cdx.witness.alarm": ("", "1 while a witness has refused a checkpoint as inconsistent"),
    "cdx.witness.checkpoint_size": ("{entry}", "size of the last checkpoint a witness accepted"),
}

Sample = tuple[float, Mapping[str, str]]
Source = Callable[[], Iterable[Sample]]

_sources_lock = threading.Lock()
_sources: dict[str, list[Source]] = {name: [] for name in GAUGES}


def observe(gauge: str, source: Source) -> Callable[[], None]:
    """Feed ``gauge`` (a name in ``GAUGES``) from ``source``, called at each collection.

    ``source`` returns ``(value, labels)`` pairs; labels name agencies, servers or certificate
    usages only. Returns a function that removes the source again (call it on stop).
    """
    if gauge not in GAUGES:
        raise ValueError(f"unknown gauge {gauge}")
    with _sources_lock:
        _sources[gauge].append(source)

    def remove() -> None:
        with _sources_lock:
            if source in _sources[gauge]:
                _sources[gauge].remove(source)

    return remove


def _gauge_callback(gauge: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    from opentelemetry.metrics import Observation

    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        with _sources_lock:
            sources = list(_sources[gauge])
        out: list[Observation] = []
        for source in sources:
            try:
                out.extend(Observation(value, dict(labels)) for value, labels in source())
            except Exception as exc:  # a failing source must not break the whole scrape
                code = exc.code if isinstance(exc, errors.CdxError) else type(exc).__name__
                log.debug("gauge %s source failed: %s", gauge, code)
        return out

    return callback


class Metrics:
    """The instruments named in the operator guide; every method is a no-op when disabled."""

    enabled = False

    def exchange(
        self,
        *,
        server: str,
        role: str,
        allowed: bool,
        reason: str,
        client: str = "",
        service: str = "",
    ) -> None:
        """Count one exchange decision (``cdx_exchanges_total``)."""

    def stage_seconds(self, stage: str, seconds: float, server: str = "") -> None:
        """Record one stage's latency (``cdx_stage_duration_seconds``)."""

    def consent_cache(self, *, hit: bool, server: str = "") -> None:
        """Count one consent-cache lookup (``cdx_consent_cache_lookups_total``)."""


class RecordingMetrics(Metrics):
    """``Metrics`` recording into ``provider``'s ``cdx`` meter, with every gauge of ``GAUGES``."""

    enabled = True

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("cdx")
        self._exchanges = meter.create_counter(
            "cdx.exchanges", unit="", description="exchange decisions by role, decision, reason"
        )
        self._stages = meter.create_histogram(
            "cdx.stage.duration",
            unit="s",
            description="latency of each stage of the exchange and the audit log",
            explicit_bucket_boundaries_advisory=STAGE_BUCKETS,
        )
        self._consent = meter.create_counter(
            "cdx.consent.cache.lookups",
            unit="",
            description="consent decisions looked up in a security server's cache (hit/miss)",
        )
        for name, (unit, description) in GAUGES.items():
            meter.create_observable_gauge(
                name, callbacks=[_gauge_callback(name)], unit=unit, description=description
            )

    def exchange(
        self,
        *,
        server: str,
        role: str,
        allowed: bool,
        reason: str,
        client: str = "",
        service: str = "",
    ) -> None:
        self._exchanges.add(
            1,
            {
                "server": server,
                "role": role,
                "decision": "allow" if allowed else "deny",
                "reason": reason,
                "client": client,
                "service": service,
            },
        )

    def stage_seconds(self, stage: str, seconds: float, server: str = "") -> None:
        self._stages.record(seconds, {"stage": stage, "server": server})

    def consent_cache(self, *, hit: bool, server: str = "") -> None:
        self._consent.add(1, {"result": "hit" if hit else "miss", "server": server})
