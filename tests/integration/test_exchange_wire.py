"""What travels between security servers: TLS on the wire, HPKE ciphertext in the envelope.

The provider (population) is registered behind a TCP relay that records every byte the
consumer's server sends it and every byte it answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdx import envelope
from cdx.v1 import exchange_pb2
from security_server.backends.sample import CITIZENS
from tests.integration.exchange_harness import ExchangeInstance, build_instance

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"
TLS_HANDSHAKE = 0x16


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeInstance]:
    root: Path = tmp_path_factory.mktemp("exchange-wire")
    inst = build_instance(root, relay=["population"])
    yield inst
    inst.close()


def _secrets() -> list[bytes]:
    return [
        ANNE.id.encode(),
        ANNE.full_name.encode(),
        ANNE.birth_date.encode(),
        ANNE.address.encode(),
        b"full_name",  # even the field names travel only inside TLS
    ]


def test_bytes_between_servers_are_tls_and_never_plaintext(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    relay = population.relay
    assert relay is not None
    for _ in range(3):
        response = social.query(population.service, ANNE.id, BENEFIT)
        assert response.data.fields["full_name"].string_value == ANNE.full_name
    assert relay.client_streams, "the consumer did not go through the relay"
    for stream in relay.client_streams + relay.server_streams:
        if not stream:
            continue
        # A TLS record: content type handshake (22), version 3.x (RFC 8446 §5.1).
        assert stream[0] == TLS_HANDSHAKE and stream[1] == 0x03
    captured = relay.captured() + b"".join(bytes(s) for s in relay.server_streams)
    assert len(captured) > 1000
    for secret in _secrets():
        assert secret not in captured


def test_envelope_carries_the_subject_only_inside_the_hpke_ciphertext(
    instance: ExchangeInstance,
) -> None:
    forger = instance.forger("social")
    try:
        sealed = forger.build("population", subject=ANNE.id)
        env = sealed.envelope
        raw = env.SerializeToString()
        assert ANNE.id.encode() not in raw
        assert ANNE.id.encode() not in env.header and ANNE.id.encode() not in env.ciphertext
        header = exchange_pb2.EnvelopeHeader.FromString(env.header)
        assert ANNE.id not in str(header)
        # The answer's payload is AES-GCM ciphertext too.
        answer = forger.send("population", env)
        for secret in _secrets()[1:4]:
            assert secret not in answer.SerializeToString()
        opened = forger.open("population", sealed, answer)
        assert opened.body.data.fields["full_name"].string_value == ANNE.full_name
        # Sanity: the provider's HPKE key is what opens the body, and only with this header.
        keys = instance.agency("population").running.keys
        verified = envelope.VerifiedRequest(header, env.header, env.ciphertext, sealed.request_hash)
        assert envelope.open_request_body(verified, keys.hpke_key).subject == ANNE.id
    finally:
        forger.close()
