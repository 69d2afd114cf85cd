"""``Exchange.Stream``: the same checks as ``Forward``, the same answers, and a unary fallback."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from cdx import errors, rpc
from cdx.v1 import exchange_pb2, exchange_pb2_grpc
from security_server.backends.sample import CITIZENS
from security_server.peers import PeerPool
from tests.integration.exchange_harness import ExchangeInstance, build_instance

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeInstance]:
    root: Path = tmp_path_factory.mktemp("exchange-stream")
    inst = build_instance(
        root,
        # population's server sends its requests as unary Forward calls.
        configure=lambda key, c: c.with_changes(exchange_stream=key != "population"),
    )
    yield inst
    inst.close()


def _stream(
    instance: ExchangeInstance, items: list[exchange_pb2.StreamItem]
) -> dict[int, exchange_pb2.StreamItem]:
    """Send ``items`` in one stream message as the social server; answers by item id."""
    social, population = instance.agency("social"), instance.agency("population")
    channel = rpc.secure_channel(population.running.exchange_address, social.exchange_identity())
    try:
        outgoing: queue.SimpleQueue[exchange_pb2.ExchangeBatch | None] = queue.SimpleQueue()
        outgoing.put(exchange_pb2.ExchangeBatch(items=items))

        def requests() -> Iterator[exchange_pb2.ExchangeBatch]:
            while (batch := outgoing.get()) is not None:
                yield batch

        answers: dict[int, exchange_pb2.StreamItem] = {}
        call = exchange_pb2_grpc.ExchangeStub(channel).Stream(requests(), timeout=20)
        for batch in call:
            for item in batch.items:
                answers[item.id] = item
            if len(answers) == len(items):
                outgoing.put(None)
        return answers
    finally:
        channel.close()


def test_stream_items_get_the_checks_and_answers_of_forward(instance: ExchangeInstance) -> None:
    forger = instance.forger("social")
    good = forger.build("population", subject=ANNE.id)
    tampered = forger.build("population", subject=ANNE.id).envelope
    tampered.signature = bytes(reversed(tampered.signature))
    answers = _stream(
        instance,
        [
            exchange_pb2.StreamItem(id=1, envelope=good.envelope),
            exchange_pb2.StreamItem(id=2, envelope=good.envelope),  # the same message again
            exchange_pb2.StreamItem(id=3, envelope=tampered),
        ],
    )
    forger.close()
    # Items run concurrently: exactly one copy of the message gets an answer.
    (first,) = [answers[i] for i in (1, 2) if not answers[i].error_code]
    (second,) = [answers[i] for i in (1, 2) if answers[i].error_code]
    opened = forger.open("population", good, first.envelope)
    assert opened.body.data.fields["full_name"].string_value == ANNE.full_name
    assert second.error_code == errors.ReplayError.code
    assert answers[3].error_code == errors.SignatureError.code


def test_queries_work_with_and_without_streaming(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    streamed = social.query(population.service, ANNE.id, BENEFIT)
    assert streamed.data.fields["full_name"].string_value == ANNE.full_name
    unary = population.query(
        instance.agency("social").service, ANNE.id, "IDENTITY_VERIFICATION"
    )  # population's server has streaming off
    assert "status" in unary.data.fields


def test_a_refusal_over_the_stream_keeps_its_error_code(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    tax = instance.agency("tax")
    with pytest.raises(errors.ConsentDeniedError):
        # A consent agreement, and no consent service here: the provider refuses.
        social.query(tax.service, ANNE.id, BENEFIT)
    with pytest.raises(errors.NotFoundError):
        social.query(population.service, "079099999999", BENEFIT)  # in no register


class _ForwardOnly(exchange_pb2_grpc.ExchangeServicer):  # type: ignore[misc]
    """An older provider: ``Forward`` only (``Stream`` answers UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.calls = 0

    def Forward(
        self, request: exchange_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> exchange_pb2.SignedEnvelope:
        self.calls += 1
        return exchange_pb2.SignedEnvelope(header=request.header, signature=b"answer")


def test_a_peer_without_stream_is_called_with_forward() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = _ForwardOnly()
    exchange_pb2_grpc.add_ExchangeServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    peers = PeerPool(None, stream=True)  # type: ignore[arg-type]  # plaintext test peer
    try:
        for n in range(3):
            envelope = exchange_pb2.SignedEnvelope(header=f"h{n}".encode(), signature=b"s")
            answer = peers.forward("VN:GOV:OLD:ss1", f"127.0.0.1:{port}", envelope, timeout=10)
            assert answer.header == envelope.header and answer.signature == b"answer"
        assert servicer.calls == 3
    finally:
        peers.close()
        server.stop(None)
