"""What an operator chose for telemetry: exporter, OTLP endpoint, health/metrics address.

From ``cdx`` flags (``add_cli_arguments``) or the environment (``ENVIRONMENT``); flags win.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdx import errors

__all__ = ["ENVIRONMENT", "EXPORTERS", "TelemetrySettings", "add_cli_arguments"]

EXPORTERS = ("none", "console", "otlp")

#: Environment variables the ``cdx`` command reads (flags win over them).
ENVIRONMENT = {
    "CDX_TELEMETRY": "exporter of traces and metrics: none (default), console or otlp",
    "CDX_OTLP_ENDPOINT": "OTLP/gRPC endpoint, e.g. http://otel-collector:4317 "
    "(default: $OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4317)",
    "CDX_HEALTH_LISTEN": "HOST:PORT of the HTTP /healthz, /livez and /metrics endpoint",
    "CDX_LOG_JSON": "1 to write logs as JSON lines (like --log-json)",
}


@dataclass(frozen=True)
class TelemetrySettings:
    """What an operator chose: exporter, OTLP endpoint and the health/metrics listen address."""

    exporter: str = "none"
    otlp_endpoint: str = ""
    health_listen: str = ""

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise errors.InvalidArgumentError(
                f"unknown telemetry exporter {self.exporter!r} (one of {', '.join(EXPORTERS)})"
            )

    @property
    def tracing(self) -> bool:
        return self.exporter != "none"

    @property
    def metrics(self) -> bool:
        """Metrics are kept when pushed (console, OTLP) or scraped (``/metrics``)."""
        return self.exporter != "none" or bool(self.health_listen)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if environ is None else environ
        return cls(
            exporter=env.get("CDX_TELEMETRY", "") or "none",
            otlp_endpoint=env.get("CDX_OTLP_ENDPOINT", ""),
            health_listen=env.get("CDX_HEALTH_LISTEN", ""),
        )

    @classmethod
    def from_args(cls, args: Any, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        """From the ``cdx`` flags of ``add_cli_arguments``, falling back to the environment."""
        base = cls.from_env(environ)
        return cls(
            exporter=getattr(args, "telemetry", None) or base.exporter,
            otlp_endpoint=getattr(args, "otlp_endpoint", None) or base.otlp_endpoint,
            health_listen=getattr(args, "health_listen", None) or base.health_listen,
        )


def add_cli_arguments(parser: Any) -> None:
    """The ``cdx`` options that choose exporters and the health endpoint (before COMMAND)."""
    parser.add_argument(
        "--telemetry",
        choices=EXPORTERS,
        help="export traces and metrics: none, console or otlp (default: $CDX_TELEMETRY or none)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="OTLP/gRPC endpoint (default: $CDX_OTLP_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    parser.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help="serve /healthz, /livez and /metrics over HTTP here (servers only; "
        "default: $CDX_HEALTH_LISTEN)",
    )
