"""``cdx.rpc.create_server`` over real TLS with registry-issued certificates: whether its ports
ask callers for a client certificate is the server's setting, and a port may say otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdx import errors, rpc
from registry.bootstrap import init_instance


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> tuple[rpc.TlsIdentity, rpc.TlsIdentity]:
    paths = init_instance(Path(tmp_path_factory.mktemp("rpc")), "VN", datetime.now(UTC))
    return paths.registry_identity(), paths.admin_identity()


def _check(address: str, channel_identity: rpc.TlsIdentity | None, ca_pem: bytes) -> None:
    channel = rpc.secure_channel(address, channel_identity, ca_pem)
    try:
        rpc.invoke(
            health_pb2_grpc.HealthStub(channel).Check, health_pb2.HealthCheckRequest(), timeout=5
        )
    finally:
        channel.close()


def _started(server: grpc.Server, identity: rpc.TlsIdentity, **port: bool) -> str:
    number = rpc.add_port(server, "localhost:0", identity, **port)
    server.start()
    return f"localhost:{number}"


def test_a_server_made_without_client_auth_serves_callers_without_a_certificate(
    identities: tuple[rpc.TlsIdentity, rpc.TlsIdentity],
) -> None:
    server_identity, client_identity = identities
    server, _ = rpc.create_server(server_identity, max_workers=2, require_client_auth=False)
    try:
        address = _started(server, server_identity)
        _check(address, None, server_identity.ca_pem)  # server-authenticated TLS only
        _check(address, client_identity, server_identity.ca_pem)
    finally:
        server.stop(None)


def test_a_server_requires_a_client_certificate_by_default(
    identities: tuple[rpc.TlsIdentity, rpc.TlsIdentity],
) -> None:
    server_identity, client_identity = identities
    server, _ = rpc.create_server(server_identity, max_workers=2)
    try:
        address = _started(server, server_identity)
        with pytest.raises(errors.UnavailableError):
            _check(address, None, server_identity.ca_pem)
        _check(address, client_identity, server_identity.ca_pem)
    finally:
        server.stop(None)


def test_a_port_may_differ_from_its_servers_client_auth(
    identities: tuple[rpc.TlsIdentity, rpc.TlsIdentity],
) -> None:
    """A security server's API-token gateway: a port without client certificates on a
    mutual-TLS server."""
    server_identity, _client = identities
    server, _ = rpc.create_server(server_identity, max_workers=2)
    try:
        address = _started(server, server_identity, require_client_auth=False)
        _check(address, None, server_identity.ca_pem)
    finally:
        server.stop(None)
