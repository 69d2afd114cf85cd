"""Serves ``cdx.v1.AuditLog`` on grpc.aio: one event loop thread answers every call; cheap
calls run on the loop, the others in a small thread pool, and append waits for its group commit
without holding a thread.

- ``GetCheckpoint`` runs on the loop (the newest checkpoint is kept in memory), so it costs
  about a plain gRPC call;
- ``AppendBatch`` checks its records' signatures in worker processes when a ``SignaturePool``
  is given (per batch), builds its entries in the thread pool, then awaits the sequencer's
  future; ``Append`` checks and builds its one record on the loop (a hop to a thread and back
  cost more than the work, and the GIL lets no thread run beside it anyway), then awaits;
- the sequencer's results reach the loop with one wake-up per group commit, not one per
  caller (``_Completions``);
- everything else runs the thread-based servicer (``audit.servicer``) in the thread pool.

Errors map to gRPC status exactly as ``cdx.rpc.ErrorInterceptor`` does for the thread servers:
the stable code in the ``cdx-error-code`` trailer, a request that does not parse is
``malformed``, anything unexpected is ``internal`` with a correlation id.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf import message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from audit.service import AuditService
from audit.servicer import AuditLogServicer, checkpoint_pb
from audit.sigpool import SignaturePool
from audit.store import CheckpointRow
from cdx import errors, rpc, telemetry
from cdx.v1 import audit_pb2

log = logging.getLogger(__name__)

SERVICE = "cdx.v1.AuditLog"
#: Batches at least this large have their signatures checked in the worker processes.
POOL_MIN_BATCH = 32
#: Appends of at most this many records are checked and built on the event loop itself.
INLINE_MAX_ITEMS = 4


class _Undecodable:
    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            return _UNDECODABLE

    return deserialize


def _guarded(
    fn: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if request is _UNDECODABLE:
                raise errors.MalformedError("the request does not parse")
            return await fn(request, context)
        except errors.CdxError as exc:
            await context.abort(
                exc.status,
                f"{exc.code}: {exc.message}",
                trailing_metadata=((rpc.ERROR_CODE_KEY, exc.code),),
            )
        except grpc.aio.AbortError:
            raise
        except Exception:
            correlation = uuid.uuid4().hex
            log.exception("internal error in %s (correlation id %s)", method, correlation)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal: internal error (correlation id {correlation})",
                trailing_metadata=(
                    (rpc.ERROR_CODE_KEY, "internal"),
                    (rpc.CORRELATION_KEY, correlation),
                ),
            )

    return handler


def _serializer(response_class: Any) -> Callable[[Any], bytes]:
    """Serialize a response, or pass on one serialized beforehand (a cached answer)."""

    def serialize(response: Any) -> bytes:
        if isinstance(response, bytes):
            return response
        data: bytes = response_class.SerializeToString(response)
        return data

    return serialize


def generic_handler(servicer: object) -> grpc.GenericRpcHandler:
    """Handlers for every method of ``cdx.v1.AuditLog``, from the descriptor."""
    service = audit_pb2.DESCRIPTOR.services_by_name["AuditLog"]
    handlers = {}
    for method in service.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, method.name), f"/{SERVICE}/{method.name}"),
            request_deserializer=_tolerant(request_class.FromString),
            response_serializer=_serializer(response_class),
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class _Completions:
    """Hands the sequencer's results to the event loop. Each caller's future completes in the
    sequencer thread; instead of a wake-up of the loop per future (``asyncio.wrap_future``),
    completions queue here and the loop is woken once to resolve all that are ready."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[Any], Future[Any]]] = []
        self._scheduled = False

    def wrap(self, done: Future[Any]) -> asyncio.Future[Any]:
        waiting: asyncio.Future[Any] = self._loop.create_future()
        done.add_done_callback(lambda f: self._completed(waiting, f))
        return waiting

    def _completed(self, waiting: asyncio.Future[Any], done: Future[Any]) -> None:
        with self._lock:
            self._ready.append((waiting, done))
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        with self._lock:
            ready, self._ready, self._scheduled = self._ready, [], False
        for waiting, done in ready:
            if waiting.cancelled():
                continue
            exc = done.exception()
            if exc is not None:
                waiting.set_exception(exc)
            else:
                waiting.set_result(done.result())


class AsyncAuditLog:
    """``cdx.v1.AuditLog`` for grpc.aio (see the module docstring)."""

    def __init__(
        self,
        servicer: AuditLogServicer,
        service: AuditService,
        threads: ThreadPoolExecutor,
        signatures: SignaturePool | None = None,
    ) -> None:
        self._sync = servicer
        self._service = service
        self._threads = threads
        self._signatures = signatures
        # The serialized answer of the checkpoint row served last (rows are cached upstream).
        self._answers: dict[int, tuple[CheckpointRow, bytes]] = {}
        self._completions: _Completions | None = None
        for name in audit_pb2.DESCRIPTOR.services_by_name["AuditLog"].methods_by_name:
            if not hasattr(self, name):
                setattr(self, name, self._in_thread(getattr(servicer, name)))

    def _in_thread(
        self, fn: Callable[[Any, Any], Any]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await self._blocking(fn, request, context)

        return call

    async def _blocking(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run ``fn`` in the thread pool, in the caller's context (its trace)."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self._threads, lambda: ctx.run(fn, *args, **kw))

    async def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        self._sync.peer(context)  # any authenticated peer
        row = self._service.checkpoint(request.min_cosignatures)
        cached = self._answers.get(request.min_cosignatures)
        if cached is None or cached[0] is not row:
            cached = (row, checkpoint_pb(row).SerializeToString())
            self._answers[request.min_cosignatures] = cached
        return cached[1]

    async def AppendBatch(
        self, request: audit_pb2.AppendBatchRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AppendBatchResponse:
        caller = self._sync.appender(context, self._service.conf())
        return audit_pb2.AppendBatchResponse(results=await self._append(caller, request.items))

    async def Append(
        self, request: audit_pb2.OutboxItem, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AppendResult:
        caller = self._sync.appender(context, self._service.conf())
        (result,) = await self._append(caller, [request])
        return result

    async def _append(self, caller: str, items: Any) -> list[audit_pb2.AppendResult]:
        items = list(items)
        codes = None
        if self._signatures is not None and len(items) >= POOL_MIN_BATCH:
            key = self._service.signing_key_of(caller, self._service.conf())
            signed = [item.record.SerializeToString() for item in items]
            codes = await asyncio.wrap_future(self._signatures.check(signed, caller, key))
        if codes is None and len(items) <= INLINE_MAX_ITEMS:
            batch = self._service.prepare_append(caller, items)
        else:
            batch = await self._blocking(
                self._service.prepare_append, caller, items, signature_codes=codes
            )
        if self._completions is None:
            self._completions = _Completions(asyncio.get_running_loop())
        with telemetry.stage("audit.append", server=caller) as stage:
            stage.set("records", len(batch.entries))
            sequenced = await self._completions.wrap(self._service.sequencer.submit(batch.entries))
        refusing = any(o is not None for o in batch.outcomes) or any(
            r.error_code for r in sequenced
        )
        if refusing:  # refusals are written to the database: not on the loop
            outcomes = await self._blocking(self._service.finish_append, batch, sequenced)
        else:
            outcomes = self._service.finish_append(batch, sequenced)
        return [
            audit_pb2.AppendResult(
                record_id=o.record_id, index=o.index, duplicate=o.duplicate, error_code=o.error_code
            )
            for o in outcomes
        ]


class AioRunner:
    """An event loop in its own thread running one grpc.aio server."""

    def __init__(self, identity: rpc.TlsIdentity, *, max_concurrent: int = 4096) -> None:
        self._identity = identity
        self._max_concurrent = max_concurrent
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cdx-audit-aio", daemon=True
        )
        self._thread.start()
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()

    def run(self, coro: Awaitable[Any], timeout: float | None = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(
        self,
        handler: grpc.GenericRpcHandler,
        address: str,
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    ) -> int:
        """Listen on ``address`` with mutual TLS and start; returns the bound port.
        ``extra_handlers`` serve more services on the same port (the entry feed).

        Raises:
            UnavailableError: the address cannot be bound.
        """

        async def _start() -> int:
            interceptors = []
            if telemetry.tracing():
                from opentelemetry.instrumentation.grpc import aio_server_interceptor

                interceptors.append(
                    aio_server_interceptor(  # type: ignore[no-untyped-call]
                        tracer_provider=telemetry.current().tracer_provider
                    )
                )
            server = grpc.aio.server(
                interceptors=interceptors,
                options=[
                    ("grpc.max_receive_message_length", rpc.MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", rpc.MAX_MESSAGE_BYTES),
                    ("grpc.so_reuseport", 0),
                ],
                maximum_concurrent_rpcs=self._max_concurrent,
            )
            server.add_generic_rpc_handlers((handler, *extra_handlers))
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            port = rpc.add_port(server, address, self._identity)
            await server.start()
            self._server = server
            return port

        return int(self.run(_start()))

    def mark_serving(self, serving: bool) -> None:
        """Set the health status (callable from any thread)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        asyncio.run_coroutine_threadsafe(self._health.set("", status), self._loop)

    def stop(self, grace: float | None) -> None:
        if self._server is not None:
            self.run(self._server.stop(grace), timeout=None)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait(self) -> None:
        while self._thread.is_alive():
            self._thread.join(0.5)
