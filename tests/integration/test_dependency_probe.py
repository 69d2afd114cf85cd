"""``cdx.dependencies.Prober`` against real gRPC servers on loopback: serving, not serving,
a server without the health service, a stopped one, and one that comes back."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from cdx import rpc
from cdx.dependencies import Dependency, Prober, channels


def _server(address: str = "127.0.0.1:0") -> tuple[grpc.Server, object, str]:
    server, health = rpc.create_server(None, max_workers=2)
    port = rpc.add_port(server, address, None)
    server.start()
    return server, health, f"127.0.0.1:{port}"


def _probe(address: str) -> Dependency:
    dep = Dependency("peer", address)
    prober = Prober(timeout=2.0)
    prober.add(dep, channels(None))
    try:
        prober.probe_once()
    finally:
        prober.stop()
    return dep


def test_a_serving_peer_is_up_and_a_not_serving_one_is_not() -> None:
    server, health, address = _server()
    try:
        rpc.mark_serving(health, True)  # type: ignore[arg-type]
        assert _probe(address).up is True
        rpc.mark_serving(health, False)  # type: ignore[arg-type]
        assert _probe(address).problem() == "not_serving"
    finally:
        server.stop(None)


def test_a_peer_without_the_health_service_answered_so_it_is_up() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        assert _probe(f"127.0.0.1:{port}").up is True
    finally:
        server.stop(None)


def test_a_stopped_peer_is_down_and_seen_again_at_the_next_probe_when_back() -> None:
    server, health, address = _server()
    rpc.mark_serving(health, True)  # type: ignore[arg-type]
    dep = Dependency("peer", address)
    prober = Prober(timeout=2.0)
    prober.add(dep, channels(None))
    try:
        prober.probe_once()
        assert dep.up is True
        server.stop(None).wait()
        prober.probe_once()
        assert dep.problem() == "unavailable"
        server, health, _ = _server(address)
        rpc.mark_serving(health, True)  # type: ignore[arg-type]
        prober.probe_once()  # no reconnect backoff to wait out
        assert dep.up is True
    finally:
        prober.stop()
        server.stop(None)


@pytest.mark.parametrize("address", ["", "127.0.0.1:1"])
def test_an_unset_address_is_skipped_and_a_closed_port_is_down(address: str) -> None:
    dep = _probe(address)
    assert dep.up is (None if not address else False)
