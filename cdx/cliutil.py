"""What every ``cdx`` sub-command shares: safe output, parser helpers, and parsing what people type.

Output. A command prints values that came from someone else (records in the audit log, consent
terms, names in the registry), so nothing is printed raw: ``say`` prints one line per argument,
``print_table`` an aligned table and ``print_json`` JSON, each with control and bidi characters
escaped (``cdx.safetext``; threat model T191). Commands never call ``print`` themselves
(``tests/unit/test_cli_output.py`` checks).

Input. ``csv``, ``parse_duration`` and ``parse_time`` turn what an operator typed into values or
an ``InvalidArgumentError`` that says what was expected; ``when`` and ``duration`` show times.

Parsers. ``leaf`` and ``group`` add sub-commands; ``add_data_option`` and ``add_timeout_option``
add the options every command on an instance's data directory takes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TextIO

from cdx import errors
from cdx.safetext import escape, escape_json

__all__ = [
    "DEFAULT_DATA",
    "add_data_option",
    "add_timeout_option",
    "csv",
    "duration",
    "group",
    "leaf",
    "on_stop_signal",
    "parse_duration",
    "parse_time",
    "print_json",
    "print_table",
    "say",
    "wait_for_stop_signal",
    "when",
]

#: The data directory commands use without ``--data`` or ``$CDX_DATA``.
DEFAULT_DATA = "./data"

Handler = Callable[[argparse.Namespace], int]


# --- output ----------------------------------------------------------------------------------


def say(*lines: object, file: TextIO | None = None) -> None:
    """Print each argument as one line, unsafe characters escaped, and flush (a service's
    "listening on" line must reach a reader at once); ``say()`` prints an empty line. A value
    holding a newline stays on its line (escaped)."""
    out = file or sys.stdout
    for line in lines or ("",):
        print(escape(str(line)), file=out)
    out.flush()


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    indent: str = "",
    file: TextIO | None = None,
) -> None:
    """Print an aligned plain-text table, every cell escaped; ``(none)`` when there are no rows."""
    out = file or sys.stdout
    text_rows = [[escape(str(c)) for c in r] for r in rows]
    if not text_rows:
        print(f"{indent}(none)", file=out)
        return
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) for i, h in enumerate(headers)]
    print(indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(), file=out)
    for r in text_rows:
        print(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)


def print_json(value: object, *, file: TextIO | None = None) -> None:
    """Print ``value`` as indented JSON (UTF-8 text kept), unsafe characters escaped."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    print(escape_json(text), file=file or sys.stdout)


# --- what people type ------------------------------------------------------------------------


def csv(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in value.split(",") if v.strip()]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d`` or plain seconds.

    Raises:
        InvalidArgumentError: anything else.
    """
    try:
        if text and text[-1] in _UNITS:
            seconds = float(text[:-1]) * _UNITS[text[-1]]
        else:
            seconds = float(text)
    except ValueError as exc:
        raise errors.InvalidArgumentError(
            f"not a duration: {escape(text)!r} (use e.g. 90s, 30m, 12h or 7d)"
        ) from exc
    if not 0 <= seconds < 10 * 365 * 86400:
        raise errors.InvalidArgumentError(f"not a sensible duration: {escape(text)!r}")
    return timedelta(seconds=seconds)


def parse_time(text: str) -> datetime:
    """``YYYY-MM-DD`` or an ISO 8601 time; UTC unless it names another offset.

    Raises:
        InvalidArgumentError: anything else.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise errors.InvalidArgumentError(
            f"not a date: {escape(text)!r} (use YYYY-MM-DD or an ISO 8601 time)"
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def when(value: datetime | int | None) -> str:
    """A time for people: ``2025-01-31 12:00:00Z``; ``-`` for none (or 0 milliseconds).

    ``value`` is a ``datetime`` or milliseconds since the epoch.
    """
    if not value:
        return "-"
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(delta: timedelta) -> str:
    """``1h02m03s``, ``2m05s`` or ``7s`` (the sign is dropped)."""
    seconds = int(abs(delta.total_seconds()))
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else (f"{m}m{s:02d}s" if m else f"{s}s")


# --- long-running commands -------------------------------------------------------------------


def on_stop_signal(stop: Callable[[], object]) -> None:
    """Call ``stop()`` on SIGTERM or SIGINT (Ctrl-C): how every long-running command ends."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def wait_for_stop_signal() -> None:
    """Return once SIGTERM or SIGINT arrives (the main thread waits; servers run in theirs)."""
    stopped = threading.Event()
    on_stop_signal(stopped.set)
    while not stopped.wait(1.0):  # a timed wait: the handler runs between waits
        pass


# --- parsers ---------------------------------------------------------------------------------


def leaf(
    sub: Any, name: str, help_text: str, handler: Handler, *, description: str = ""
) -> argparse.ArgumentParser:
    """A sub-command running ``handler``; ``description`` keeps its line breaks."""
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=handler)
    return p


def group(sub: Any, name: str, help_text: str, *, description: str = "") -> Any:
    """A sub-command with sub-commands of its own (alone, it prints its help and fails)."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=description or help_text
    )

    def show_help(_args: argparse.Namespace) -> int:
        p.print_help()
        return 1

    p.set_defaults(handler=show_help)
    return p.add_subparsers(dest=f"{name.replace('-', '_')}_command", metavar="COMMAND")


def add_data_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--data DIR`` (alias ``--data-dir``): the instance's data directory."""
    p.add_argument(
        "--data",
        "--data-dir",
        dest="data",
        default=os.environ.get("CDX_DATA", DEFAULT_DATA),
        metavar="DIR",
        help="instance data directory (default: $CDX_DATA or ./data)",
    )


def add_timeout_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default: 10)")
