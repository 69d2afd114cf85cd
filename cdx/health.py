"""The HTTP health and metrics endpoint of a CDX process: ``/healthz``, ``/livez``, ``/metrics``.

``HealthEndpoint(address, checks)`` serves, from a daemon thread (stdlib ``http.server``):

- ``GET /healthz``: runs every check; 503 and ``"status": "unhealthy"`` when a *critical*
  check fails (load balancers and Kubernetes readiness probes take the process out of service),
  200 and ``"degraded"`` when only non-critical ones fail (an unreachable dependency the process
  can still serve without, an alarm for an operator), 200 and ``"ok"`` otherwise. The body
  lists every check's code and, under ``details``, what a check knows beyond its code (a
  dependency's peer, last success and last error);
- ``GET /livez``: 200 while the process serves HTTP at all (liveness: restarting a process
  because its global configuration expired would not help);
- ``GET /metrics``: the Prometheus exposition of ``cdx.telemetry`` (404 while metrics are off).

A check is a named callable taking ``now`` and returning ``None`` when healthy or a short
stable code (``conf_expired``, ``certificate_expired``, ``audit_backlog``, ``witness_alarm``);
never personal data. The helpers below build the usual checks from a component's parts;
``cdx.dependencies`` builds the non-critical checks of the peers a process depends on.
``start_operations`` starts telemetry and this endpoint for a ``cdx ... serve`` command.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509

from cdx import errors, telemetry
from cdx.clock import Clock, utcnow

log = logging.getLogger(__name__)

__all__ = [
    "DEGRADED",
    "OK",
    "PATHS",
    "UNHEALTHY",
    "Check",
    "HealthEndpoint",
    "Operations",
    "certificate_check",
    "conf_check",
    "error_check",
    "overall",
    "problem_check",
    "start_operations",
]

#: Paths the endpoint serves (deploy manifests may probe only these).
PATHS = ("/healthz", "/livez", "/metrics")

CheckFn = Callable[[datetime], "str | None"]
#: What a check knows beyond its code, JSON-ready (names, addresses, codes, times only).
DetailFn = Callable[[], Mapping[str, object]]

OK, DEGRADED, UNHEALTHY = "ok", "degraded", "unhealthy"


@dataclass(frozen=True)
class Check:
    """One named health condition; ``fn(now)`` returns ``None`` or a problem code.

    A failing ``critical`` check makes the process unhealthy (not ready); a failing
    non-critical one only degrades it. ``detail()`` adds context to the report.
    """

    name: str
    fn: CheckFn
    critical: bool = True
    detail: DetailFn | None = None


# --- check helpers -------------------------------------------------------------------------------


def error_check(name: str, fn: Callable[[datetime], object]) -> Check:
    """Healthy while ``fn(now)`` returns; a ``CdxError`` it raises is the problem (its code)."""

    def run(now: datetime) -> str | None:
        try:
            fn(now)
        except errors.CdxError as exc:
            return exc.code
        return None

    return Check(name, run)


def conf_check(name: str, current: Callable[[datetime], object]) -> Check:
    """Fails (``conf_expired`` or the source's code) when no current global conf exists."""
    return error_check(name, current)


def certificate_check(name: str, certificates: Callable[[], Iterable[x509.Certificate]]) -> Check:
    """Fails with ``certificate_expired`` (or ``certificate_not_yet_valid``) when any
    certificate is outside its validity period at ``now``."""

    def run(now: datetime) -> str | None:
        for cert in certificates():
            if now > cert.not_valid_after_utc:
                return "certificate_expired"
            if now < cert.not_valid_before_utc:
                return "certificate_not_yet_valid"
        return None

    return Check(name, run)


def problem_check(
    name: str, problem: Callable[[], str | None], code: str = "", *, critical: bool = True
) -> Check:
    """Fails while ``problem()`` returns something (reported as ``code``, or that value)."""

    def run(_now: datetime) -> str | None:
        found = problem()
        if not found:
            return None
        return code or str(found)

    return Check(name, run, critical=critical)


def evaluate(checks: Sequence[Check], now: datetime) -> dict[str, str]:
    """Every check's result: ``"ok"`` or its problem code (a raising check: ``check_failed``)."""
    results: dict[str, str] = {}
    for check in checks:
        try:
            problem = check.fn(now)
        except Exception as exc:  # a broken check reports unhealthy; it never breaks the endpoint
            code = exc.code if isinstance(exc, errors.CdxError) else type(exc).__name__
            log.warning("health check %s failed: %s", check.name, code)
            problem = "check_failed"
        results[check.name] = problem or OK
    return results


def overall(checks: Sequence[Check], results: Mapping[str, str]) -> str:
    """``unhealthy`` if a critical check failed, ``degraded`` if only others did, else ``ok``.
    A result without a check (``startup``) counts as critical."""
    critical = {c.name: c.critical for c in checks}
    failing = [name for name, code in results.items() if code != OK]
    if any(critical.get(name, True) for name in failing):
        return UNHEALTHY
    return DEGRADED if failing else OK


def details(checks: Sequence[Check]) -> dict[str, Mapping[str, object]]:
    """The ``detail()`` of every check that has one (a failing one is left out)."""
    out: dict[str, Mapping[str, object]] = {}
    for check in checks:
        if check.detail is None:
            continue
        try:
            out[check.name] = check.detail()
        except Exception:  # details are a courtesy; the check's code already says it all
            log.debug("health detail of %s failed", check.name, exc_info=True)
    return out


# --- the HTTP endpoint ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        endpoint = self.server.endpoint
        if path == "/healthz":
            checks = list(endpoint.checks)
            results = endpoint.evaluate()
            status = overall(checks, results)
            body = {
                "status": status,
                "component": endpoint.component,
                "checks": results,
                "details": details(checks),
            }
            self._send(
                503 if status == UNHEALTHY else 200,
                json.dumps(body).encode(),
                "application/json",
                send_body,
            )
        elif path == "/livez":
            self._send(200, b'{"status": "ok"}', "application/json", send_body)
        elif path == "/metrics":
            text = telemetry.current().prometheus_text()
            if text is None:
                self._send(404, b"metrics are off\n", "text/plain", send_body)
            else:
                self._send(200, text, "text/plain; version=0.0.4; charset=utf-8", send_body)
        else:
            self._send(404, b"not found\n", "text/plain", send_body)

    def _send(self, status: int, body: bytes, content_type: str, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # probes every few seconds would drown the log; nothing here is worth keeping


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: HealthEndpoint


class HealthEndpoint:
    """Serves ``/healthz``, ``/livez`` and ``/metrics`` on ``address`` until ``stop()``.

    ``checks`` may be extended after start (``add``); ``clock`` gives ``now`` to the checks.

    Raises:
        UnavailableError: the address cannot be bound.
    """

    def __init__(
        self,
        address: str,
        checks: Sequence[Check] = (),
        *,
        component: str = "",
        clock: Clock = utcnow,
    ) -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise errors.InvalidArgumentError("the health address is HOST:PORT")
        self.checks: list[Check] = list(checks)
        #: Unhealthy ("starting") until the component's checks are added.
        self.ready = bool(checks)
        self.component = component
        self.clock = clock
        try:
            self._server = _Server((host.strip("[]") or "0.0.0.0", int(port)), _Handler)  # noqa: S104
        except OSError as exc:
            raise errors.UnavailableError(f"cannot listen on {address}") from exc
        self._server.endpoint = self
        self.port = int(self._server.server_address[1])
        self.address = f"{host or '0.0.0.0'}:{self.port}"  # noqa: S104
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cdx-health", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = self.address.rpartition(":")[0]
        if host in ("", "0.0.0.0", "::"):  # noqa: S104
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    def add(self, *checks: Check) -> None:
        """Add checks; the endpoint reports healthy only from the first call on."""
        self.checks.extend(checks)
        self.ready = True

    def evaluate(self) -> dict[str, str]:
        """Every check's result (``startup: starting`` until checks were added)."""
        results = {} if self.ready else {"startup": "starting"}
        results.update(evaluate(self.checks, self.clock()))
        return results

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- a serve command's operations ----------------------------------------------------------------


@dataclass
class Operations:
    """Telemetry and the health endpoint of one ``cdx ... serve`` process."""

    telemetry: telemetry.Telemetry
    endpoint: HealthEndpoint | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def add_checks(self, *checks: Check) -> None:
        if self.endpoint is not None:
            self.endpoint.add(*checks)

    def on_stop(self, fn: Callable[[], None]) -> None:
        self._cleanup.append(fn)

    def stop(self) -> None:
        for fn in reversed(self._cleanup):
            try:
                fn()
            except Exception:  # keep stopping the rest
                log.exception("stopping telemetry failed")
        self._cleanup.clear()
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None
        telemetry.reset()


def start_operations(
    args: Any,
    *,
    component: str,
    server_id: str = "",
    checks: Sequence[Check] = (),
) -> Operations:
    """Configure telemetry from the ``cdx`` flags (or environment) and start the health
    endpoint when ``--health-listen`` / ``$CDX_HEALTH_LISTEN`` is set. Call it before the
    component's servers are created so that their gRPC calls are traced.

    Raises:
        InvalidArgumentError: an unknown exporter or a bad address.
        UnavailableError: the health address cannot be bound.
    """
    settings = telemetry.TelemetrySettings.from_args(args)
    tel = telemetry.configure(settings, component=component, server_id=server_id)
    endpoint = None
    if settings.health_listen:
        try:
            endpoint = HealthEndpoint(settings.health_listen, checks, component=component)
        except errors.CdxError:
            telemetry.reset()
            raise
        log.info("health and metrics on %s (/healthz, /livez, /metrics)", endpoint.url)
    return Operations(tel, endpoint)


# --- gauges every component shares ---------------------------------------------------------------


def observe_conf(
    labels: dict[str, str], latest: Callable[[], Any], clock: Clock = utcnow
) -> list[Callable[[], None]]:
    """Feed ``cdx_globalconf_{age,expires_in}_seconds`` and ``cdx_globalconf_version`` from
    ``latest()`` (a ``ConfClient.latest``: the copy held, expired or not). Returns removers."""

    def conf_samples(kind: str) -> list[telemetry.Sample]:
        conf = latest()
        if conf is None:
            return []
        now = clock()
        if kind == "age":
            value = (now - conf.issued_at).total_seconds()
        elif kind == "expires_in":
            value = (conf.expires_at - now).total_seconds()
        else:
            value = float(conf.version)
        return [(value, labels)]

    return [
        telemetry.observe("cdx.globalconf.age", lambda: conf_samples("age")),
        telemetry.observe("cdx.globalconf.expires_in", lambda: conf_samples("expires_in")),
        telemetry.observe("cdx.globalconf.version", lambda: conf_samples("version")),
    ]


def observe_certificates(
    labels: dict[str, str],
    certificates: Callable[[], Iterable[tuple[str, x509.Certificate]]],
    clock: Clock = utcnow,
) -> Callable[[], None]:
    """Feed ``cdx_certificate_expires_in_seconds{usage=...}`` from ``(usage, certificate)``
    pairs (usage: ``auth``, ``signing``, ``tls``, ``ca``). Returns the remover."""

    def samples() -> list[telemetry.Sample]:
        now = clock()
        return [
            ((cert.not_valid_after_utc - now).total_seconds(), {**labels, "usage": usage})
            for usage, cert in certificates()
        ]

    return telemetry.observe("cdx.certificate.expires_in", samples)
