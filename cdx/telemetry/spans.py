"""Stages: a span ``cdx.<name>`` and a stage-latency sample per block, free while telemetry is off.

``stage(name)`` returns one shared null object while telemetry is off (the hot path pays one
attribute check). A failed stage records its stable error code, never a message or a traceback.
"""

from __future__ import annotations

import time
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace

from cdx import errors
from cdx.telemetry.providers import Telemetry, current

__all__ = ["annotate", "mark", "stage"]


class _NullStage:
    """What ``stage`` returns while telemetry is off: does nothing, costs nothing."""

    __slots__ = ()

    def __enter__(self) -> _NullStage:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: str | int | bool) -> None:
        return None


_NULL_STAGE = _NullStage()


class _Stage:
    __slots__ = ("_attributes", "_name", "_parent", "_server", "_span", "_start", "_tel", "_token")

    def __init__(
        self,
        tel: Telemetry,
        name: str,
        server: str,
        parent: otel_context.Context | None,
        attributes: dict[str, str],
    ) -> None:
        self._tel = tel
        self._name = name
        self._server = server
        self._parent = parent
        self._attributes = attributes
        self._span: trace.Span | None = None
        self._token: object = None
        self._start = 0.0

    def __enter__(self) -> _Stage:
        tracer = self._tel.tracer
        if tracer is not None:
            attributes = {f"cdx.{k}": v for k, v in self._attributes.items() if v}
            if self._server:
                attributes["cdx.server"] = self._server
            span = tracer.start_span(
                f"cdx.{self._name}", context=self._parent, attributes=attributes
            )
            self._span = span
            self._token = otel_context.attach(trace.set_span_in_context(span, self._parent))
        self._start = time.perf_counter()
        return self

    def set(self, key: str, value: str | int | bool) -> None:
        """Add an attribute (``cdx.<key>``) to the stage's span; identifiers and codes only."""
        if self._span is not None:
            self._span.set_attribute(f"cdx.{key}", value)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        span = self._span
        if span is not None:
            if exc is not None:
                # The stable code only: messages and stack traces stay out of telemetry.
                code = exc.code if isinstance(exc, errors.CdxError) else type(exc).__name__
                span.set_attribute("cdx.error_code", code)
                span.set_status(trace.Status(trace.StatusCode.ERROR, code))
            otel_context.detach(self._token)  # type: ignore[arg-type]
            span.end()
        self._tel.metrics.stage_seconds(self._name, elapsed, self._server)


def stage(
    name: str,
    *,
    server: str = "",
    parent: otel_context.Context | None = None,
    **attributes: str,
) -> _Stage | _NullStage:
    """Time one stage: span ``cdx.<name>`` (child of ``parent`` or the current span) and a
    ``cdx_stage_duration_seconds{stage=name}`` sample. ``attributes`` become ``cdx.<key>``
    span attributes: agency, service, purpose or message ids and codes, never personal data.
    """
    tel = current()
    if not tel.active:
        return _NULL_STAGE
    return _Stage(tel, name, server, parent, attributes)


def mark(name: str, started: float, *, server: str = "") -> None:
    """Close stage ``name`` that began at ``started`` (``time.perf_counter()``) without its
    own span: a histogram sample and an event ``cdx.<name>`` on the current span. For stages
    whose end is not the end of a block (e.g. the provider's checks before the backend call)."""
    tel = current()
    if not tel.active:
        return
    tel.metrics.stage_seconds(name, time.perf_counter() - started, server)
    if tel.tracer is not None:
        trace.get_current_span().add_event(f"cdx.{name}")


def annotate(key: str, value: str | int | bool) -> None:
    """Set ``cdx.<key>`` on the current span (identifiers and codes only)."""
    if current().tracer is not None:
        trace.get_current_span().set_attribute(f"cdx.{key}", value)
