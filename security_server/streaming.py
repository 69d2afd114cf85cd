"""``Exchange.Stream``: many exchanges over one long-lived stream between two security servers.

A unary ``Forward`` costs a whole gRPC call on each side (~200 µs of CPU here); a message on an
open stream costs about half, and the envelopes queued while the previous message was being
sent travel together in the next one (natural batching, like the outbox's group commit), so
under load the per-exchange transport cost falls further. Nothing else changes: every request
envelope goes through ``Provider.forward`` exactly as a unary call does (peer certificate of
the stream, signature, freshness, replay, agreement, lawful basis, durable record before the
answer leaves), and a refusal comes back as the same stable error code.

- ``ProviderStreams.serve`` (provider side) reads request items, runs each on a worker pool and
  sends answers as they complete, in any order, at most ``max_open`` open items per stream
  (then it stops reading, and HTTP/2 flow control pushes back on the consumer).
- ``PeerStream`` (consumer side) multiplexes concurrent ``forward`` calls onto one stream and
  matches answers by item id. A broken stream fails its open items with ``UnavailableError``
  (like a broken connection under unary calls) and the next call opens a new stream; a peer
  that does not implement ``Stream`` is called with unary ``Forward`` from then on.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

import grpc
from cryptography import x509

from cdx import errors, rpc
from cdx.v1 import exchange_pb2

log = logging.getLogger(__name__)

#: Most items one stream message may carry (either way).
MAX_BATCH = 64
#: Most items a provider processes at once for one stream before it stops reading.
MAX_OPEN = 512

_END = object()


def _answer(
    forward: Callable[
        [exchange_pb2.SignedEnvelope, x509.Certificate | None], exchange_pb2.SignedEnvelope
    ],
    item: exchange_pb2.StreamItem,
    peer: x509.Certificate | None,
) -> exchange_pb2.StreamItem:
    try:
        return exchange_pb2.StreamItem(id=item.id, envelope=forward(item.envelope, peer))
    except errors.CdxError as exc:
        return exchange_pb2.StreamItem(id=item.id, error_code=exc.code, error_message=exc.message)
    except Exception:
        correlation = uuid.uuid4().hex
        log.exception("internal error in Exchange.Stream (correlation id %s)", correlation)
        return exchange_pb2.StreamItem(
            id=item.id,
            error_code=errors.InternalError.code,
            error_message=f"internal error (correlation id {correlation})",
        )


class ProviderStreams:
    """Serves ``Exchange.Stream`` with a provider's ``forward`` on ``executor``'s threads."""

    def __init__(
        self,
        forward: Callable[
            [exchange_pb2.SignedEnvelope, x509.Certificate | None], exchange_pb2.SignedEnvelope
        ],
        executor: Executor,
        *,
        max_open: int = MAX_OPEN,
    ) -> None:
        self._forward = forward
        self._executor = executor
        self._max_open = max_open

    def serve(
        self,
        request_iterator: Iterator[Any],
        peer: x509.Certificate | None,
        context: grpc.ServicerContext,
    ) -> Iterator[exchange_pb2.ExchangeBatch]:
        """Answer the items of one stream until the consumer closes it or the call ends."""
        answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        slots = threading.Semaphore(self._max_open)
        state = {"submitted": 0}

        def handle(item: exchange_pb2.StreamItem) -> None:
            try:
                answers.put(_answer(self._forward, item, peer))
            finally:
                slots.release()

        def read() -> None:
            try:
                for batch in request_iterator:
                    if not isinstance(batch, exchange_pb2.ExchangeBatch):
                        break  # undecodable bytes: end the stream
                    items = batch.items
                    for index, item in enumerate(items):
                        while not slots.acquire(timeout=1.0):
                            if not context.is_active():
                                return
                        state["submitted"] += 1
                        if index >= MAX_BATCH:
                            slots.release()
                            answers.put(
                                exchange_pb2.StreamItem(
                                    id=item.id,
                                    error_code=errors.LimitExceededError.code,
                                    error_message="too many items in one stream message",
                                )
                            )
                            continue
                        self._executor.submit(handle, item)
            except grpc.RpcError:
                pass  # the consumer went away
            except Exception:
                log.exception("reading an exchange stream failed")
            finally:
                answers.put(_END)

        reader = threading.Thread(target=read, name="cdx-ss-stream-reader", daemon=True)
        reader.start()
        answered = 0
        reading = True
        while reading or answered < state["submitted"]:
            try:
                first = answers.get(timeout=1.0)
            except queue.Empty:
                if not context.is_active():
                    return
                continue
            batch = exchange_pb2.ExchangeBatch()
            item = first
            while True:
                if item is _END:
                    reading = False
                else:
                    batch.items.append(item)
                    answered += 1
                if len(batch.items) >= MAX_BATCH:
                    break
                try:
                    item = answers.get_nowait()
                except queue.Empty:
                    break
            if batch.items:
                yield batch


class PeerStream:
    """One open ``Exchange.Stream`` to a provider server, shared by concurrent ``forward``s."""

    def __init__(self, stub: Any) -> None:
        self._outgoing: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: dict[int, Future[exchange_pb2.StreamItem]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.broken = False
        self.unimplemented = False
        self._call = stub.Stream(self._requests())
        self._receiver = threading.Thread(
            target=self._receive, name="cdx-ss-stream-receiver", daemon=True
        )
        self._receiver.start()

    def _requests(self) -> Iterator[exchange_pb2.ExchangeBatch]:
        while True:
            item = self._outgoing.get()
            if item is _END:
                return
            batch = exchange_pb2.ExchangeBatch()
            batch.items.append(item)
            while len(batch.items) < MAX_BATCH:
                try:
                    item = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                if item is _END:
                    yield batch
                    return
                batch.items.append(item)
            yield batch

    def _receive(self) -> None:
        failure: errors.CdxError = errors.UnavailableError("the exchange stream closed")
        try:
            for batch in self._call:
                for item in batch.items:
                    with self._lock:
                        future = self._pending.pop(item.id, None)
                    if future is not None:
                        future.set_result(item)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.unimplemented = True
            failure = rpc.error_from_rpc(exc)
            if not isinstance(failure, errors.UnavailableError | errors.DeadlineExceededError):
                failure = errors.UnavailableError("the exchange stream failed")
        except Exception:
            log.exception("exchange stream receiver failed")
        finally:
            with self._lock:
                self.broken = True
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(failure)

    def forward(
        self, envelope: exchange_pb2.SignedEnvelope, *, timeout: float
    ) -> exchange_pb2.SignedEnvelope:
        """Send one request envelope and wait for its answer.

        Raises:
            CdxError: the provider's refusal (same class and code as ``Forward`` raises).
            UnavailableError: the stream broke (``broken`` is then set; open a new one).
            DeadlineExceededError: no answer within ``timeout``.
        """
        future: Future[exchange_pb2.StreamItem] = Future()
        with self._lock:
            if self.broken:
                raise errors.UnavailableError("the exchange stream closed")
            item_id = next(self._ids)
            self._pending[item_id] = future
        self._outgoing.put(exchange_pb2.StreamItem(id=item_id, envelope=envelope))
        try:
            answer = future.result(timeout=timeout)
        except TimeoutError as exc:
            with self._lock:
                self._pending.pop(item_id, None)
            raise errors.DeadlineExceededError() from exc
        if answer.error_code:
            raise errors.class_for_code(answer.error_code)(answer.error_message or None)
        return answer.envelope

    def close(self) -> None:
        self._outgoing.put(_END)
        self._call.cancel()
