"""A gRPC load generator in its own process (so the client never shares a GIL with a server).

``LoadGenerator`` starts one child process (``multiprocessing``, spawn) that keeps long-lived
channels to named targets, like a real client, and runs measurements on command: ``run(target,
concurrency, duration)`` keeps ``concurrency`` calls in flight (grpc.aio) for ``warmup`` +
``duration`` seconds and returns per-call latencies of the measured window, the throughput and
the number of failures. Requests rotate through a fixed list; every response is deserialised.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench.common import process_cpu_seconds


@dataclass(frozen=True)
class Target:
    """Where to send what: a unary method, the serialized requests, the response type."""

    name: str
    address: str
    method: str  # e.g. "/cdx.v1.Gateway/Query"
    requests: tuple[bytes, ...]
    response_type: str  # a message of cdx.v1, e.g. "exchange_pb2.QueryResponse"
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)


@dataclass
class LoadResult:
    target: str
    concurrency: int
    duration_s: float
    calls: int  # completed within the measured window
    failures: int
    latencies_s: list[float]
    total_calls: int  # including the warm-up
    first_error: str = ""

    @property
    def throughput(self) -> float:
        return self.calls / self.duration_s if self.duration_s else 0.0


def _response_class(name: str) -> Any:
    """``"exchange_pb2.QueryResponse"`` -> the class (generated modules of ``cdx.v1`` only)."""
    import importlib

    module, _, cls = name.partition(".")
    if not module.endswith("_pb2") or not module.isidentifier():
        raise ValueError(f"not a generated message type: {name}")
    return getattr(importlib.import_module(f"cdx.v1.{module}"), cls)


class _Client:
    def __init__(self) -> None:
        import grpc

        self._grpc = grpc
        self._channels: dict[str, Any] = {}
        self._methods: dict[str, Any] = {}
        self._stale: list[Any] = []

    def method(self, target: Target) -> Any:
        key = f"{target.name}|{target.address}|{target.method}"
        found = self._methods.get(key)
        if found is not None:
            return found
        from cdx import rpc

        grpc = self._grpc
        options = [
            ("grpc.max_receive_message_length", rpc.MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", rpc.MAX_MESSAGE_BYTES),
        ]
        if target.ca_pem is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=target.ca_pem,
                private_key=target.key_pem,
                certificate_chain=target.cert_pem,
            )
            channel = grpc.aio.secure_channel(target.address, creds, options=options)
        else:
            channel = grpc.aio.insecure_channel(target.address, options=options)
        response = _response_class(target.response_type)
        call = channel.unary_unary(
            target.method,
            request_serializer=None,  # requests are serialized once, up front
            response_deserializer=response.FromString,
        )
        old = self._channels.pop(target.name, None)
        if old is not None:
            self._stale.append(old)  # closed at the end (closing needs the event loop)
        self._channels[target.name] = channel
        self._methods[key] = call
        return call

    async def run(
        self, target: Target, concurrency: int, duration: float, warmup: float, timeout: float
    ) -> LoadResult:
        call = self.method(target)
        requests = target.requests
        clock = time.perf_counter
        start = clock()
        measure_from = start + warmup
        end = measure_from + duration
        latencies: list[float] = []
        counters = {"failures": 0, "total": 0, "completed": 0}
        first_error: list[str] = []

        async def worker(offset: int) -> None:
            i = offset
            while True:
                t0 = clock()
                if t0 >= end:
                    return
                request = requests[i % len(requests)]
                i += concurrency
                try:
                    await call(request, timeout=timeout)
                except self._grpc.RpcError as exc:
                    counters["failures"] += 1
                    if not first_error:
                        first_error.append(f"{exc.code()}: {exc.details()}")
                    continue
                t1 = clock()
                counters["total"] += 1
                if measure_from <= t1 <= end:
                    counters["completed"] += 1  # throughput: completions in the window
                    if t0 >= measure_from:
                        latencies.append(t1 - t0)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return LoadResult(
            target.name,
            concurrency,
            duration,
            counters["completed"],
            counters["failures"],
            latencies,
            counters["total"],
            first_error[0] if first_error else "",
        )

    async def close(self) -> None:
        for channel in [*self._channels.values(), *self._stale]:
            await channel.close()


def _child(conn: Connection) -> None:
    async def main() -> None:
        client = _Client()
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message is None:
                break
            target, concurrency, duration, warmup, timeout = message
            try:
                result = await client.run(target, concurrency, duration, warmup, timeout)
            except Exception as exc:  # report, do not hang the parent
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
            else:
                conn.send(("ok", result))
        await client.close()

    asyncio.run(main())


class LoadGenerator:
    """The parent's handle on the load-generating process."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child,), name="cdx-bench-load", daemon=True)
        self._proc.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self._proc.pid is not None
        return self._proc.pid

    def run(
        self,
        target: Target,
        *,
        concurrency: int,
        duration: float,
        warmup: float = 0.5,
        timeout: float = 30.0,
    ) -> LoadResult:
        self._conn.send((target, concurrency, duration, warmup, timeout))
        status, payload = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"load generator failed: {payload}")
        assert isinstance(payload, LoadResult)
        return payload

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
