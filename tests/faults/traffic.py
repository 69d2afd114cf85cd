"""Steady exchange traffic on a few threads for fault tests, remembering every answer."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cdx import errors
from cdx.v1 import exchange_pb2
from tests.waiting import eventually


class Traffic:
    """Runs ``query()`` in a loop on ``threads`` threads until stopped.

    ``accepted`` holds the record ids (consumer's and provider's) of every answer received:
    records both servers committed before the data was released, which must reach the log.
    """

    def __init__(self, query: Callable[[], exchange_pb2.QueryResponse], threads: int = 3) -> None:
        self._query = query
        self._stop = threading.Event()
        self.lock = threading.Lock()
        self.accepted: list[str] = []
        self.answers = 0
        self.refusals: list[str] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = self._query()
            except errors.CdxError as exc:
                with self.lock:
                    self.refusals.append(exc.code)
                self._stop.wait(0.02)  # pace the retries
                continue
            with self.lock:
                self.answers += 1
                self.accepted += [r.record_id, r.provider_record_id]

    def wait_answers(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more answers than now have arrived."""
        with self.lock:
            target = self.answers + count

        def arrived() -> bool:
            with self.lock:
                return self.answers >= target

        eventually(arrived, timeout=timeout, what=f"traffic ({self.refusals[-5:]} refused)")

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)
