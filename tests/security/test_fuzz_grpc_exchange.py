"""Random protobufs at every gRPC endpoint of the security servers and the registry, sent by
authenticated callers (so that they reach the application): every failure carries a stable code
other than ``internal``, nothing hangs, and the servers keep serving afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx import rpc
from cdx.v1 import exchange_pb2, registry_pb2
from security_server.backends.sample import CITIZENS
from tests.integration.exchange_harness import ExchangeInstance, build_instance

from .fuzzing import (
    call_raw,
    fuzz_settings,
    mutated,
    random_requests,
    raw_protobuf_bytes,
    rpc_methods,
)

pytestmark = pytest.mark.xdist_group("fuzz-grpc-exchange")

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"
QUERY = exchange_pb2.DESCRIPTOR.services_by_name["Gateway"].methods_by_name["Query"]
FORWARD = exchange_pb2.DESCRIPTOR.services_by_name["Exchange"].methods_by_name["Forward"]
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name
REGISTRY_METHODS = [
    m for service in ("GlobalConfService", "RegistryAdmin") for m in rpc_methods(REGISTRY[service])
]


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeInstance]:
    inst = build_instance(tmp_path_factory.mktemp("fuzz-grpc-exchange"))
    yield inst
    inst.close()


@pytest.fixture(scope="module")
def channels(instance: ExchangeInstance) -> Iterator[dict[str, object]]:
    with _channels(instance) as opened:
        yield opened


@contextlib.contextmanager
def _channels(instance: ExchangeInstance) -> Iterator[dict[str, object]]:
    social = instance.agency("social")
    population = instance.agency("population")
    opened = {
        "gateway": rpc.secure_channel(social.running.gateway_address, social.client_identity),
        "token_gateway": rpc.secure_channel(
            social.running.gateway_token_address, None, social.client_identity.ca_pem
        ),
        "exchange": rpc.secure_channel(
            population.running.exchange_address, social.exchange_identity()
        ),
        "registry_admin": rpc.secure_channel(instance.registry.address, instance.admin_identity),
        "registry_server": rpc.secure_channel(
            instance.registry.address, social.exchange_identity()
        ),
    }
    yield opened
    for channel in opened.values():
        channel.close()  # type: ignore[attr-defined]


def _still_serving(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    assert social.query(population.service, ANNE.id, BENEFIT).data.fields
    for agency in instance.agencies.values():
        assert agency.running.health_problem is None


def test_fuzz_gateway_query(instance: ExchangeInstance, channels: dict) -> None:  # type: ignore[type-arg]
    token = (("authorization", f"Bearer {instance.agency('social').token}"),)

    @fuzz_settings()
    @given(payload=random_requests(QUERY), via=st.sampled_from(["gateway", "token_gateway"]))
    def fuzz(payload: bytes, via: str) -> None:
        call_raw(channels[via], QUERY, payload, metadata=token if via == "token_gateway" else None)

    fuzz()
    _still_serving(instance)


def test_fuzz_exchange_forward(instance: ExchangeInstance, channels: dict) -> None:  # type: ignore[type-arg]
    @fuzz_settings()
    @given(payload=random_requests(FORWARD))
    def fuzz(payload: bytes) -> None:
        call_raw(channels["exchange"], FORWARD, payload)

    fuzz()
    _still_serving(instance)


def test_fuzz_exchange_forward_signed_by_a_registered_server(
    instance: ExchangeInstance,
    channels: dict,  # type: ignore[type-arg]
) -> None:
    """Garbage headers with a valid signature get past the signature check at the provider."""
    forger = instance.forger("social")
    valid = forger.build("population").envelope

    @fuzz_settings(scale=0.5)
    @given(header=raw_protobuf_bytes(exchange_pb2.EnvelopeHeader), data=st.data())
    def fuzz(header: bytes, data: st.DataObject) -> None:
        if data.draw(st.booleans()):
            header = data.draw(mutated(valid.header))
        env = forger.resign(exchange_pb2.SignedEnvelope(header=header, ciphertext=valid.ciphertext))
        call_raw(channels["exchange"], FORWARD, env.SerializeToString())

    try:
        fuzz()
    finally:
        forger.close()
    _still_serving(instance)


def test_fuzz_registry_endpoints(tmp_path: Path) -> None:
    instance = build_instance(tmp_path)  # its own: the admin calls change the registry
    try:
        with _channels(instance) as channels:
            _fuzz_registry(instance, channels)
    finally:
        instance.close()


def _fuzz_registry(instance: ExchangeInstance, channels: dict) -> None:  # type: ignore[type-arg]
    @fuzz_settings(scale=2)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(REGISTRY_METHODS), label="method")
        payload = data.draw(random_requests(method), label="payload")
        caller = data.draw(st.sampled_from(["registry_admin", "registry_server"]), label="caller")
        call_raw(channels[caller], method, payload)

    fuzz()
    instance.sync_conf()
    _still_serving(instance)
