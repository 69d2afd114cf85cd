"""The clock: the only place the kernel's callers read the time (pure code takes ``now``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = [
    "Clock",
    "utcnow",
]

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
