"""Log lines for a ``cdx`` process: plain text or JSON, never a raw control or bidi character.

Log messages carry values other parties sent (a peer's client id, a reason string); printed raw,
an escape sequence could rewrite the operator's terminal or forge a line. Both formatters escape
them (``cdx.safetext``; threat model T192): the plain one every line of the message and of a
traceback, the JSON one inside its strings (the JSON value stays the same).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from cdx.safetext import escape, escape_json
from cdx.telemetry.providers import current

__all__ = ["QUIET_LOGGERS", "JsonFormatter", "TextFormatter", "configure_logging"]

#: Loggers kept at WARNING even with ``--verbose``: SQLAlchemy's INFO lines carry statement
#: parameters (national ids in register lookups) and HTTP client/server libraries log URLs.
QUIET_LOGGERS = ("sqlalchemy", "httpx", "httpcore", "urllib3", "uvicorn.access")


def _escaped_lines(text: str) -> str:
    return "\n".join(escape(line) for line in text.splitlines())


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` with unsafe characters escaped; a traceback keeps its line
    breaks, each line escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _escaped_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _escaped_lines(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace and span ids when a span is active."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        component = current().component
        if component:
            entry["component"] = component
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return escape_json(json.dumps(entry, ensure_ascii=False))


def configure_logging(*, verbose: bool = False, json_lines: bool = False) -> None:
    """Configure the root logger once for a CLI process (``$CDX_LOG_JSON=1`` also picks JSON)."""
    json_lines = json_lines or os.environ.get("CDX_LOG_JSON", "") not in ("", "0")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("cdx").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
