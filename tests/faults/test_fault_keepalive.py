"""An idle connection stays up: client and server share one keepalive policy (``cdx.rpc``).

An idle hour is simulated with a short policy on both ends: the test waits until the client
has sent several keepalive pings on its one connection (counted by gRPC's channelz, read through
its own service) and checks the server never answered with ``GOAWAY ENHANCE_YOUR_CALM
"too_many_pings"`` — which shows as the channel leaving READY. The control test shows the
detection works: a server left at gRPC's ping policy does send that GOAWAY to the same client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_channelz.v1 import channelz, channelz_pb2, channelz_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cdx import rpc
from cdx.paths import InstancePaths
from registry.bootstrap import init_instance

#: One ping per interval (gRPC core sends them at most about once a second: an "hour" of idle
#: pings takes a few seconds).
SHORT = rpc.KeepalivePolicy(interval_ms=200, timeout_ms=100)
PINGS = 4
DEADLINE_S = 60.0


def eventually(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> tuple[rpc.TlsIdentity, rpc.TlsIdentity]:
    """A registry-issued server identity and a client identity of the same instance."""
    paths: InstancePaths = init_instance(
        Path(tmp_path_factory.mktemp("keepalive")), "VN", datetime.now(UTC)
    )
    return paths.registry_identity(), paths.admin_identity()


@pytest.fixture(scope="module")
def channelz_stub() -> Iterator[channelz_pb2_grpc.ChannelzStub]:
    """gRPC's channelz service of this process, for counting keepalive pings."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    channelz.add_channelz_servicer(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channelz_pb2_grpc.ChannelzStub(channel)
    channel.close()
    server.stop(None)


def _pings_sent(stub: channelz_pb2_grpc.ChannelzStub, target: str) -> int:
    """Keepalive pings sent on the sockets of the channels to ``target``."""
    total = 0
    top = stub.GetTopChannels(channelz_pb2.GetTopChannelsRequest(start_channel_id=0))
    for channel in top.channel:
        if channel.data.target.removeprefix("dns:///") != target:
            continue
        for ref in channel.subchannel_ref:
            sub = stub.GetSubchannel(
                channelz_pb2.GetSubchannelRequest(subchannel_id=ref.subchannel_id)
            ).subchannel
            for socket_ref in sub.socket_ref:
                socket = stub.GetSocket(
                    channelz_pb2.GetSocketRequest(socket_id=socket_ref.socket_id)
                ).socket
                total += socket.data.keep_alives_sent
    return total


class _States:
    """Every connectivity state the channel went through."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.seen: list[grpc.ChannelConnectivity] = []
        self._lock = threading.Lock()
        channel.subscribe(self._record, try_to_connect=True)

    def _record(self, state: grpc.ChannelConnectivity) -> None:
        with self._lock:
            self.seen.append(state)

    def after_ready(self) -> list[grpc.ChannelConnectivity]:
        with self._lock:
            if grpc.ChannelConnectivity.READY not in self.seen:
                return []
            return self.seen[self.seen.index(grpc.ChannelConnectivity.READY) + 1 :]


def _serve(server: grpc.Server, identity: rpc.TlsIdentity) -> tuple[str, health.HealthServicer]:
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = rpc.add_port(server, "localhost:0", identity)
    server.start()
    return f"localhost:{port}", servicer


def test_an_idle_connection_under_the_keepalive_policy_gets_no_goaway(
    identities: tuple[rpc.TlsIdentity, rpc.TlsIdentity],
    channelz_stub: channelz_pb2_grpc.ChannelzStub,
) -> None:
    server_identity, client_identity = identities
    server, _health = rpc.create_server(server_identity, max_workers=2, keepalive=SHORT)
    address, _ = _serve(server, server_identity)
    channel = rpc.secure_channel(address, client_identity, keepalive=SHORT)
    try:
        states = _States(channel)
        check = health_pb2_grpc.HealthStub(channel).Check
        assert check(health_pb2.HealthCheckRequest(), timeout=10).status  # connected, then idle
        eventually(lambda: _pings_sent(channelz_stub, address) >= PINGS, f"{PINGS} idle pings")
        assert states.after_ready() == [], "the server dropped the idle connection (GOAWAY)"
        assert check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert states.after_ready() == []  # the same connection served the call
    finally:
        channel.close()
        server.stop(None)


def test_a_server_left_at_grpc_ping_defaults_would_send_goaway_to_the_idle_client(
    identities: tuple[rpc.TlsIdentity, rpc.TlsIdentity],
) -> None:
    """The control: the server options CDX used before (pings permitted without calls, but
    gRPC's five-minute minimum between them) against the same client policy."""
    server_identity, client_identity = identities
    before = [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=before)
    address, _ = _serve(server, server_identity)
    channel = rpc.secure_channel(address, client_identity, keepalive=SHORT)
    try:
        states = _States(channel)
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        eventually(lambda: bool(states.after_ready()), "the server's GOAWAY")
        assert states.after_ready()[0] != grpc.ChannelConnectivity.READY
    finally:
        channel.close()
        server.stop(None)
