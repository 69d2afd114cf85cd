"""Sends what the outbox holds: one thread claims due messages, a small pool sends them.

The claim loop wakes when messages are queued (``poke``), when the earliest retry falls due,
and at least every ``idle`` seconds (messages queued by another replica). A message that fails
affects only itself: the others keep flowing while it waits for its next attempt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from cdx import errors, telemetry
from notify.channels import Delivery, Sender
from notify.service import NotifyService
from notify.store import DEAD

log = logging.getLogger(__name__)


class Deliverer:
    """The sending loop of one notification service process."""

    def __init__(
        self,
        service: NotifyService,
        senders: Mapping[str, Sender],
        *,
        workers: int = 4,
        idle: float = 1.0,
        on_sent: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._service = service
        self._senders = dict(senders)
        self._idle = idle
        self._on_sent = on_sent
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdx-notify-send")
        self._thread = threading.Thread(target=self._run, name="cdx-notify-deliver", daemon=True)

    def start(self) -> Deliverer:
        self._thread.start()
        return self

    def poke(self) -> None:
        """Messages were queued: look now."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._service.claim()
            except Exception:  # the database: try again at the next round
                log.warning("could not claim notifications", exc_info=True)
                batch = []
            if batch:
                for outcome in [self._pool.submit(self._send, d) for d in batch]:
                    outcome.result()
                continue  # more may be due
            self._wake.wait(self._wait_s())
            self._wake.clear()

    def _wait_s(self) -> float:
        try:
            due = self._service.next_due_ms()
        except Exception:
            return self._idle
        if due is None:
            return self._idle
        return max(0.0, min(self._idle, (due - self._service.now_ms()) / 1000))

    def _send(self, delivery: Delivery) -> None:
        sender = self._senders.get(delivery.channel)
        try:
            if sender is None:
                raise errors.DeliveryRefusedError(f"no {delivery.channel} channel is configured")
            with telemetry.stage("notify.send", channel=delivery.channel):
                sender.send(delivery)
        except errors.CdxError as exc:
            state = self._service.failed(delivery.id, exc)
            level = logging.WARNING if state == DEAD else logging.INFO
            log.log(
                level,
                "notification %d by %s failed (%s): %s",
                delivery.id,
                delivery.channel,
                exc.code,
                "dead letter" if state == DEAD else "will retry",
            )
            return
        except Exception:
            log.exception(
                "notification %d by %s failed unexpectedly", delivery.id, delivery.channel
            )
            self._service.failed(delivery.id, errors.DeliveryUnavailableError())
            return
        self._service.delivered(delivery.id)
        if self._on_sent is not None:
            self._on_sent(delivery)
