"""Per-agreement rate limits (``rate_limit_per_minute`` in global configuration).

A token bucket per agreement: capacity = the per-minute limit, refilled continuously. Buckets
are per process; replicas behind a load balancer each enforce the full limit (documented in
docs/adr/0002-exchange-envelope.md).
"""

from __future__ import annotations

import threading

from cdx import errors


class RateLimiter:
    """Thread-safe token buckets keyed by agreement id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)

    def acquire(self, key: str, per_minute: int, now: float) -> None:
        """Take one token from ``key``'s bucket (``per_minute`` 0 = unlimited).

        ``now`` is a monotonic time in seconds.

        Raises:
            RateLimitedError: the bucket is empty.
        """
        if per_minute <= 0:
            return
        rate = per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + max(0.0, now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise errors.RateLimitedError()
            self._buckets[key] = (tokens - 1.0, now)
